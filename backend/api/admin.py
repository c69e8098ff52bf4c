"""Audit log and tenant overview: platform admins across tenants (explicit, itself audited), and each
tenant admin for their own tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from backend.api.deps import PlatformAdmin, ServicesDep, TenantAdmin, client_ip
from backend.api.limits import MAX_ID
from backend.api.params import IsoDateTime
from backend.db.models import AuditEvent
from backend.db.repositories.api_keys import list_api_keys
from backend.db.repositories.audit import list_events
from backend.errors import NotFound

router = APIRouter(tags=["admin"])


class AuditEventPublic(BaseModel):
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
    def of(cls, event: AuditEvent) -> AuditEventPublic:
        return cls.model_validate(event, from_attributes=True)


Limit = Annotated[int, Query(ge=1, le=1000)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID, description="page back: the last id of the previous page")]
Since = Annotated[IsoDateTime | None, Query(alias="from", description="first instant, ISO 8601 (UTC if no offset)")]
Until = Annotated[IsoDateTime | None, Query(alias="to", description="end instant, excluded")]


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _page(response: Response, events: list, limit: int) -> None:
    """A full page may have more behind it: the cursor of the next one (newest first)."""
    if len(events) == limit and events:
        response.headers["X-Next-Before"] = str(events[-1].id)


@router.get("/api/admin/audit")
def platform_audit(principal: PlatformAdmin, services: ServicesDep, request: Request, response: Response,
                   tenant: str | None = None, kind: str | None = None, limit: Limit = 100, before: Before = None,
                   since: Since = None, until: Until = None) -> list[AuditEventPublic]:
    if tenant is not None and services.registry.get(tenant) is None:
        raise NotFound(f"unknown tenant {tenant!r}; tenants: {', '.join(services.registry.ids())}",
                       code="tenant_not_found")
    # A cross-tenant read is itself an audit event, so operators are accountable too.
    services.audit.record("admin_access", subject=principal.subject, tenant=tenant, route=request.url.path,
                          ip=client_ip(request), status=200, detail={"kind": kind, "limit": limit})
    with services.db.session() as session:
        events = list_events(session=session, tenant=tenant, kind=kind, limit=limit, before_id=before,
                             since=_utc(since), until=_utc(until))
    _page(response, events, limit)
    return [AuditEventPublic.of(e) for e in events]


@router.get("/api/admin/tenants")
def platform_tenants(principal: PlatformAdmin, services: ServicesDep, request: Request) -> list[dict]:
    services.audit.record("admin_access", subject=principal.subject, route=request.url.path,
                          ip=client_ip(request), status=200)
    return [
        {"id": t.id, "name": t.name, "assistants": [a.name for a in t.assistants],
         "match": t.match.model_dump(), "roles": {r: rule.model_dump() for r, rule in t.roles.items()},
         "deployment_group": t.deployment_group}
        for t in services.registry.all()
    ]


# Counted across every tenant (denials per IP or user): for operators, at /api/admin/audit.
PLATFORM_ONLY_KINDS = ("suspicious_access",)
OTHER_TENANT_DETAIL = ("member_of",)  # which tenants the caller belongs to: not this tenant's business
# A probe of another tenant's document id: telling this tenant would confirm that the id exists elsewhere
# (a random id leaves no event), so only operators see it.
PLATFORM_ONLY_REASONS = ("other_tenants_document", "other_tenants_assistant")


@router.get("/api/t/{tenant}/audit")
def tenant_audit(ctx: TenantAdmin, services: ServicesDep, response: Response, kind: str | None = None,
                 limit: Limit = 100, before: Before = None, since: Since = None,
                 until: Until = None) -> list[AuditEventPublic]:
    """This tenant's events, as its admin may see them: who tried what here, but nothing about other tenants
    (their API key ids or document ids, the caller's other memberships, platform-wide counters)."""
    with services.db.session() as session:
        events = list_events(session=session, tenant=ctx.tenant, kind=kind, limit=limit,
                             exclude_kinds=PLATFORM_ONLY_KINDS, exclude_reasons=PLATFORM_ONLY_REASONS,
                             before_id=before, since=_utc(since), until=_utc(until))
        own_keys = {f"key:{k.id}" for k in list_api_keys(session=session, tenant=ctx.tenant)}
    _page(response, events, limit)
    out = []
    for e in events:
        public = AuditEventPublic.of(e)
        public.detail = {k: v for k, v in public.detail.items() if k not in OTHER_TENANT_DETAIL}
        if public.subject and public.subject.startswith("key:") and public.subject not in own_keys:
            public.subject = "another tenant's API key"
        out.append(public)
    return out
