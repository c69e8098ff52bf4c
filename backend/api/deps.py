"""Request dependencies as Annotated aliases: services, the verified principal, the tenant guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from backend.auth.principal import Principal
from backend.container import Services
from backend.errors import Forbidden, NotAuthenticated


def get_services_dep(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services_dep)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _session_claims(request: Request) -> dict | None:
    """Claims from Chainlit's session cookie (same login as the chat; signed by CHAINLIT_AUTH_SECRET)."""
    from chainlit.auth import get_token_from_cookies
    from chainlit.auth.jwt import decode_jwt

    token = get_token_from_cookies(request.cookies)
    if not token:
        return None
    try:
        user = decode_jwt(token)
    except Exception:
        return None
    claims = (user.metadata or {}).get("claims")
    return claims if isinstance(claims, dict) else None


def get_principal(request: Request, services: ServicesDep) -> Principal:
    claims = _session_claims(request)
    if claims is None:
        _deny(request, services, 401, "not authenticated: log in at /chat or send a bearer token",
              code="not_authenticated")
    return services.principal_from_claims(claims, auth="session")


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _deny(request: Request, services: Services, status: int, reason: str, *, code: str,
          subject: str | None = None, tenant: str | None = None) -> None:
    services.audit.record("denied", subject=subject, tenant=tenant, route=request.url.path,
                          ip=client_ip(request), status=status, reason=code,
                          detail={"message": reason, "method": request.method})
    raise (NotAuthenticated if status == 401 else Forbidden)(reason, code=code)


@dataclass(frozen=True)
class TenantContext:
    """A principal bound to the one tenant of this request (URL, header and token agree)."""

    principal: Principal
    tenant: str


def get_tenant_context(
    request: Request, services: ServicesDep, principal: PrincipalDep,
    tenant: Annotated[str, Path(description="tenant id")],
) -> TenantContext:
    header = request.headers.get("x-tenant-id")
    if header is not None and header != tenant:
        _deny(request, services, 403, f"X-Tenant-ID {header!r} does not match the URL tenant {tenant!r}",
              code="tenant_header_mismatch", subject=principal.subject, tenant=tenant)
    if not principal.is_member(tenant):
        _deny(request, services, 403, f"you are not a member of tenant {tenant!r}",
              code="tenant_mismatch", subject=principal.subject, tenant=tenant)
    return TenantContext(principal=principal, tenant=tenant)


TenantDep = Annotated[TenantContext, Depends(get_tenant_context)]
