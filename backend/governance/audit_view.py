"""The audit log read back: by platform operators across tenants (each such read is itself an `admin_access`
event, so operators are accountable too), and by a tenant's admins for their own tenant, redacted so that it tells
them nothing about other tenants.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

from backend.auth.guard import AuditSink
from backend.db.engine import Database
from backend.db.models import AuditEvent
from backend.db.repositories.api_keys import list_api_keys
from backend.db.repositories.audit import list_denials, list_events
from backend.errors import Misdirected, NotFound
from backend.tenants import TenantRegistry

# Counted across every tenant (denials per IP or user): for operators, at /api/admin/audit.
PLATFORM_ONLY_KINDS = ("suspicious_access",)
OTHER_TENANT_DETAIL = ("member_of",)  # which tenants the caller belongs to: not this tenant's business
# A probe of another tenant's document id: telling this tenant would confirm that the id exists elsewhere
# (a random id leaves no event), so only operators see it.
PLATFORM_ONLY_REASONS = ("other_tenants_document", "other_tenants_assistant")
OTHER_TENANTS_KEY = "another tenant's API key"


@dataclass(frozen=True)
class AuditEntry:
    """One audit event as it is shown (plain data; no ORM row leaves this module)."""

    id: int
    created_at: datetime
    kind: str
    subject: str | None
    tenant: str | None
    route: str | None
    ip: str | None
    status: int | None
    reason: str | None
    detail: dict
    # A refusal repeated from the same source, tenant, reason and route within ATRIUM_AUDIT_DENIAL_WINDOW_S is one
    # event: `count` times, the first at created_at (whose detail it keeps), the latest at last_at.
    count: int = 1
    last_at: datetime | None = None

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEntry:
        assert event.id is not None
        return cls(id=event.id, created_at=event.created_at, kind=event.kind, subject=event.subject,
                   tenant=event.tenant, route=event.route, ip=event.ip, status=event.status, reason=event.reason,
                   detail=dict(event.detail or {}), count=event.count, last_at=event.last_at)


def as_utc(value: datetime | None) -> datetime | None:
    """An instant without an offset is UTC (as the routes document)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class AuditView:
    def __init__(self, *, db: Database, audit: AuditSink, registry: TenantRegistry) -> None:
        self.db = db
        self.audit = audit
        self.registry = registry
        # The tenants other deployment groups serve: their events are for their group's operators (one database
        # holds every group's audit log), never shown by this process.
        self.elsewhere = tuple(t.id for t in registry.every() if not registry.is_served(t.id))

    def operator_read(self, subject: str, *, route: str, ip: str | None, tenant: str | None = None,
                      detail: dict | None = None) -> None:
        """Record that an operator looked across tenants (before anything is read)."""
        self.audit.record("admin_access", subject=subject, tenant=tenant, route=route, ip=ip, status=200,
                          detail=detail)

    def platform(self, subject: str, *, route: str, ip: str | None, tenant: str | None = None,
                 kind: str | None = None, limit: int = 100, before: int | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> list[AuditEntry]:
        """Every tenant's events (or one tenant's), newest first, for a platform operator: an audited read."""
        if tenant is not None and (placement := self.registry.placement(tenant)) is not None:
            self.audit.record("denied", subject=subject, tenant=tenant, route=route, ip=ip, status=421,
                              reason="served_elsewhere", detail={"message": placement.message(), **placement.public()})
            raise Misdirected(placement.message(), extra=placement.public())
        if tenant is not None and self.registry.get(tenant) is None:
            raise NotFound(f"unknown tenant {tenant!r}; tenants: {', '.join(self.registry.ids())}",
                           code="tenant_not_found")
        self.operator_read(subject, route=route, ip=ip, tenant=tenant, detail={"kind": kind, "limit": limit})
        with self.db.session() as session:
            events = list_events(session=session, tenant=tenant, kind=kind, limit=limit, before_id=before,
                                 since=as_utc(since), until=as_utc(until), exclude_tenants=self.elsewhere)
            return [AuditEntry.of(e) for e in events]

    def tenant(self, tenant: str, *, kind: str | None = None, subject: str | None = None, limit: int = 100,
               before: int | None = None, since: datetime | None = None,
               until: datetime | None = None) -> list[AuditEntry]:
        """This tenant's events, as its admin may see them: who tried what here, but nothing about other tenants
        (their API key ids or document ids, the caller's other memberships, platform-wide counters).
        `subject`: one person's (or key's) events only."""
        with self.db.session() as session:
            events = [AuditEntry.of(e) for e in list_events(
                session=session, tenant=tenant, kind=kind, subject=subject, limit=limit,
                exclude_kinds=PLATFORM_ONLY_KINDS, exclude_reasons=PLATFORM_ONLY_REASONS, before_id=before,
                since=as_utc(since), until=as_utc(until))]
            own_keys = {f"key:{k.id}" for k in list_api_keys(session=session, tenant=tenant)}
        shown = [redacted(e, own_keys) for e in events]
        # Asking for another tenant's key id finds nothing, as a random id would (its events are shown redacted).
        return [e for e in shown if subject is None or e.subject == subject]

    def denials(self, *, sign_in_pages: tuple[str, ...], sign_in_prompts: bool, limit: int) -> list[AuditEntry]:
        """Denials, newest first: the anonymous visits of `sign_in_pages` before signing in when
        `sign_in_prompts`, else every other one (list_denials)."""
        with self.db.session() as session:
            return [AuditEntry.of(e) for e in list_denials(session=session, sign_in_pages=sign_in_pages,
                                                           sign_in_prompts=sign_in_prompts, limit=limit,
                                                           exclude_tenants=self.elsewhere)]

    def events(self, *, kind: str, limit: int) -> list[AuditEntry]:
        """The latest events of one kind, across tenants (for operators)."""
        with self.db.session() as session:
            return [AuditEntry.of(e) for e in list_events(session=session, kind=kind, limit=limit,
                                                          exclude_tenants=self.elsewhere)]


def redacted(entry: AuditEntry, own_keys: set[str]) -> AuditEntry:
    """`entry` without what belongs to other tenants: the caller's other memberships, another tenant's key id."""
    subject = entry.subject
    if subject and subject.startswith("key:") and subject not in own_keys:
        subject = OTHER_TENANTS_KEY
    detail = {k: v for k, v in entry.detail.items() if k not in OTHER_TENANT_DETAIL}
    return dataclasses.replace(entry, subject=subject, detail=detail)
