"""Ending a user's browser sessions (someone leaves, a laptop is lost): a tenant admin for a member of their tenant,
a platform admin for anyone. Every session signed in until now is refused from the next request on, on every
replica; the user can sign in again (the identity provider decides whether they still may). The rule is
`SessionRegistry.end` (backend/auth/sessions.py), which audits every call, refused or not."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import PlatformAdmin, ServicesDep, TenantAdmin, client_ip
from backend.auth.principal import Principal
from backend.container import Services

router = APIRouter(tags=["sessions"])


class EndSessions(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not ignored

    subject: str = Field(min_length=1, max_length=256,
                         description="the user's subject, as `GET /api/me` and the audit log name it")


class SessionsEndedOut(BaseModel):
    subject: str
    ended: int = Field(description="active sessions (signed in within ATRIUM_SESSION_HOURS and not signed out) "
                                   "that this ended")
    ended_at: datetime


@router.post("/api/t/{tenant}/sessions/end")
def end_tenant_sessions(body: EndSessions, ctx: TenantAdmin, services: ServicesDep,
                        request: Request) -> SessionsEndedOut:
    """A member of this tenant (by the claims of their latest sign-in); anyone else is a 404, as if unknown."""
    return _end(services, request, ctx.principal, body.subject, tenant=ctx.tenant)


@router.post("/api/admin/sessions/end")
def end_sessions(body: EndSessions, principal: PlatformAdmin, services: ServicesDep,
                 request: Request) -> SessionsEndedOut:
    """Any user who has signed in."""
    return _end(services, request, principal, body.subject, tenant=None)


def _end(services: Services, request: Request, by: Principal, subject: str, *, tenant: str | None) -> SessionsEndedOut:
    result = services.sessions.end(subject=subject, by=by.subject, tenant=tenant, route=request.url.path,
                                   ip=client_ip(request))
    return SessionsEndedOut(subject=result.subject, ended=result.ended,
                            ended_at=datetime.fromtimestamp(result.ended_at, UTC))
