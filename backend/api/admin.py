"""Audit log and tenant overview: platform admins across tenants (explicit, itself audited), and each
tenant admin for their own tenant (redacted). The rules and the audit log entries are governance's (audit_view.py,
operators.py); this module parses and shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from backend.api.deps import PlatformAdmin, ServicesDep, TenantAdmin, client_ip
from backend.api.limits import MAX_ID
from backend.api.params import IsoDateTime
from backend.governance.audit_view import AuditEntry

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
    def of(cls, event: AuditEntry) -> AuditEventPublic:
        return cls.model_validate(event, from_attributes=True)


Limit = Annotated[int, Query(ge=1, le=1000)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID, description="page back: the last id of the previous page")]
Since = Annotated[IsoDateTime | None, Query(alias="from", description="first instant, ISO 8601 (UTC if no offset)")]
Until = Annotated[IsoDateTime | None, Query(alias="to", description="end instant, excluded")]


def _page(response: Response, events: list[AuditEntry], limit: int) -> list[AuditEventPublic]:
    """A full page may have more behind it: the cursor of the next one (newest first)."""
    if len(events) == limit and events:
        response.headers["X-Next-Before"] = str(events[-1].id)
    return [AuditEventPublic.of(e) for e in events]


@router.get("/api/admin/audit")
def platform_audit(principal: PlatformAdmin, services: ServicesDep, request: Request, response: Response,
                   tenant: str | None = None, kind: str | None = None, limit: Limit = 100, before: Before = None,
                   since: Since = None, until: Until = None) -> list[AuditEventPublic]:
    events = services.audit_view.platform(principal.subject, route=request.url.path, ip=client_ip(request),
                                          tenant=tenant, kind=kind, limit=limit, before=before, since=since,
                                          until=until)
    return _page(response, events, limit)


@router.get("/api/admin/tenants")
def platform_tenants(principal: PlatformAdmin, services: ServicesDep, request: Request) -> list[dict]:
    return services.operators.tenants(principal.subject, route=request.url.path, ip=client_ip(request))


@router.get("/api/t/{tenant}/audit")
def tenant_audit(ctx: TenantAdmin, services: ServicesDep, response: Response, kind: str | None = None,
                 subject: Annotated[str | None, Query(max_length=200, description="one person's (or API key's, "
                                                      "`key:<id>`) events only")] = None,
                 limit: Limit = 100, before: Before = None, since: Since = None,
                 until: Until = None) -> list[AuditEventPublic]:
    """This tenant's events, as its admin may see them: who tried what here, but nothing about other tenants
    (their API key ids or document ids, the caller's other memberships, platform-wide counters)."""
    events = services.audit_view.tenant(ctx.tenant, kind=kind, subject=subject, limit=limit, before=before,
                                        since=since, until=until)
    return _page(response, events, limit)
