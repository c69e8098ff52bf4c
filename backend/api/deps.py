"""Request dependencies as Annotated aliases: services, the verified principal, the tenant guard, RBAC.

The one place a request becomes a Principal (session cookie, bearer JWT from the IdP, or tenant API
key) and the one place the URL tenant, the X-Tenant-ID header and the credentials are made to agree.
Every refusal here is a 401/403 with a reason code and an audit event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastapi import Depends, Path, Request
from opentelemetry import trace

from backend.auth.api_keys import PREFIX as API_KEY_PREFIX
from backend.auth.api_keys import InvalidApiKey, VerifiedKey
from backend.auth.guard import Denial, decide, is_operator
from backend.auth.jwt_verifier import TokenRejected
from backend.auth.principal import Principal
from backend.auth.rbac import Permission, roles_for_scopes
from backend.auth.session_cookie import session_token
from backend.auth.sessions import REFUSALS
from backend.container import Services
from backend.errors import Invalid, Unavailable
from backend.logs import request_info
from backend.tenants import TenantRegistry
from backend.tracing import TENANT, recording, span


# Dependencies that do no blocking I/O are `async def`: FastAPI runs sync ones in a worker thread, and
# those hops were a measurable share of the gateway's per-request cost (bench/gateway).
async def get_services_dep(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services_dep)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def deny(request: Request, services: Services, status: int, message: str, *, code: str,
         subject: str | None = None, tenant: str | None = None, detail: dict | None = None) -> NoReturn:
    """Audit the refusal, then raise it (app.py turns it into `{"error": code, "detail": message}`)."""
    headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{code}"'} \
        if status == 401 else None
    services.access.refuse(Denial(code, message, status, detail or {}), subject=subject, tenant=tenant,
                           route=request.url.path, ip=client_ip(request), method=request.method, headers=headers)


async def adeny(request: Request, services: Services, status: int, message: str, *, code: str,
                subject: str | None = None, tenant: str | None = None, detail: dict | None = None) -> NoReturn:
    """`deny` for async dependencies: the audit write runs off the event loop."""
    await asyncio.to_thread(deny, request, services, status, message, code=code, subject=subject,
                            tenant=tenant, detail=detail)
    raise AssertionError("unreachable")  # deny always raises


def _query_names(dependant: Any) -> frozenset[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def reject_unknown_query(request: Request) -> None:
    """/api routes take only the query parameters they declare: `?since=` where the route reads `from` is
    refused, not silently ignored (as unknown body fields are). Installed on the whole app (app.py)."""
    if not request.query_params or not request.url.path.startswith("/api/"):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names = getattr(route, "_atrium_query_names", None)
    if names is None:
        names = route._atrium_query_names = _query_names(dependant)  # type: ignore[union-attr]
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        takes = ", ".join(sorted(names)) or "none"
        raise Invalid(f"unknown query parameter {unknown[0]!r} (this route takes: {takes})",
                      code="unknown_query_parameter")


def _url_tenant(request: Request) -> str | None:
    return request.path_params.get("tenant")


def _key_principal(request: Request, services: Services, token: str) -> Principal:
    """Sync (SQL on a cache miss, audit on a refusal): run it in a worker thread."""
    try:
        key = services.api_keys.verify(db=services.db, token=token)
    except InvalidApiKey as exc:
        messages = {"malformed_api_key": "the API key is malformed (expected atr_<id>_<secret>)",
                    "unknown_api_key": "the API key is not valid",
                    "revoked_api_key": "the API key has been revoked (it, or the key it was made with): ask a "
                                       "tenant admin for a new one",
                    "expired_api_key": "the API key has expired: ask a tenant admin for a new one"}
        key_id = token[len(API_KEY_PREFIX):].partition("_")[0][:32]
        deny(request, services, 401, messages.get(exc.reason, "the API key is not valid"), code=exc.reason,
             subject=f"key:{key_id}" if exc.reason in ("revoked_api_key", "expired_api_key") else None,
             tenant=_url_tenant(request),
             detail={"key_id": key_id})
    return _principal_of_key(key, services.registry)


def _principal_of_key(key: VerifiedKey, registry: TenantRegistry) -> Principal:
    # A key of a tenant another deployment group serves acts nowhere here; it is only told where that tenant is.
    placement = registry.placement(key.tenant)
    return Principal(subject=f"key:{key.id}", name=key.name or f"API key {key.id}",
                     tenants={} if placement else {key.tenant: roles_for_scopes(key.scopes)}, auth="api_key",
                     scopes=key.scopes, key_id=key.id, acting_for=key.owner,  # the person at the key chain's root
                     owner_basis=key.owner_basis,  # whose allowance its calls count against: the owner's
                     elsewhere={key.tenant: placement} if placement else {})


# The principal of a cached key, per key object (KeyCache hands out the same VerifiedKey until it re-verifies the key)
# and registry (immutable once built): building it was ~0.04 profiled ms per request. Bounded; the entry holds the
# key itself, so its id cannot be reused while remembered.
_KEY_PRINCIPALS: dict[int, tuple[VerifiedKey, TenantRegistry, Principal]] = {}
_KEY_PRINCIPALS_MAX = 10_000


def _cached_principal_of_key(key: VerifiedKey, registry: TenantRegistry) -> Principal:
    hit = _KEY_PRINCIPALS.get(id(key))
    if hit is not None and hit[0] is key and hit[1] is registry:
        return hit[2]
    principal = _principal_of_key(key, registry)
    if len(_KEY_PRINCIPALS) >= _KEY_PRINCIPALS_MAX:
        _KEY_PRINCIPALS.clear()
    _KEY_PRINCIPALS[id(key)] = (key, registry, principal)
    return principal


def _jwt_principal(request: Request, services: Services, token: str) -> Principal:
    if token.count(".") != 2:  # not header.payload.signature: say what it is not, before any IdP talk
        hint = (": it looks like a model provider's key; Atrium's API keys start with atr_"
                if token.startswith(("sk-", "sk_", "AIza")) else "")
        deny(request, services, 401, f"the bearer token is neither an Atrium API key (atr_...) nor a JWT{hint}",
             code="malformed_token", tenant=_url_tenant(request))
    verifier = services.jwt_verifier
    if verifier is None:
        deny(request, services, 401, "bearer JWTs are not accepted here: OIDC_ISSUER and OIDC_API_AUDIENCE "
             "are not configured; use an API key (atr_...) instead", code="jwt_not_configured",
             tenant=_url_tenant(request))
    try:
        claims = verifier.verify(token)
    except TokenRejected as exc:
        if exc.reason == "idp_unavailable":  # our problem, not the caller's: 503, and retrying may help
            raise Unavailable(exc.message, code="idp_unavailable", headers={"Retry-After": "10"}) from exc
        deny(request, services, 401, exc.message, code=exc.reason, tenant=_url_tenant(request),
             detail={"claimed_subject": exc.claimed_subject} if exc.claimed_subject else None)
    try:
        return services.principal_from_claims(claims, auth="jwt")
    except ValueError as exc:
        deny(request, services, 401, f"the token cannot be mapped to a user: {exc}", code="malformed_token",
             tenant=_url_tenant(request))


async def get_principal(request: Request, services: ServicesDep) -> Principal:
    """Authorization header (API key or IdP JWT) if present — never silently ignored — else the session.

    Async so that the common case (a recently verified API key) needs no worker thread; what may block (SQL for
    an unseen key or a session's revocation check, a JWKS fetch, an audit write) runs in one. In its own span."""
    if not recording():  # what span() would do, without its context manager's cost per request
        return await _principal(request, services)
    with span("atrium.authenticate") as current:
        principal = await _principal(request, services)
        current.set_attribute("atrium.auth_method", principal.auth)
        return principal


async def _principal(request: Request, services: Services) -> Principal:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await adeny(request, services, 401, "the Authorization header must be `Bearer <token>`",
                        code="malformed_authorization", tenant=_url_tenant(request))
        if token.startswith(API_KEY_PREFIX):
            key = services.api_keys.get(token)
            if key is not None:
                return _cached_principal_of_key(key, services.registry)
            return await asyncio.to_thread(_key_principal, request, services, token)
        return await asyncio.to_thread(_jwt_principal, request, services, token)
    token = session_token(request.cookies)
    caller = await asyncio.to_thread(services.session_caller, token) if token else None
    if caller is not None and caller.principal is not None:
        return caller.principal
    if caller is not None and caller.unmappable is not None:
        await adeny(request, services, 401, f"the session cannot be mapped to a user: {caller.unmappable}",
                    code="bad_session")
    if caller is not None and caller.check.reason in REFUSALS:
        await adeny(request, services, 401, caller.check.message, code=str(caller.check.reason),
                    subject=caller.check.subject, tenant=_url_tenant(request))
    await adeny(request, services, 401, "not authenticated: log in at /chat, or send `Authorization: Bearer` "
                "with an IdP access token or an API key", code="not_authenticated", tenant=_url_tenant(request))


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@dataclass(frozen=True)
class TenantContext:
    """A principal bound to the one tenant of this request (URL, header and token agree)."""

    principal: Principal
    tenant: str


async def get_tenant_context(
    request: Request, services: ServicesDep, principal: PrincipalDep,
    tenant: Annotated[str, Path(description="tenant id")],
) -> TenantContext:
    headers = request.headers.getlist("x-tenant-id")
    header = headers[0] if headers else None
    who = principal.subject
    if len(headers) > 1:  # which one counts would depend on the proxy in between: ambiguous, so refused
        await adeny(request, services, 403, f"send X-Tenant-ID once (it came {len(headers)} times)",
                    code="tenant_header_repeated", subject=who, tenant=tenant,
                    detail={"header_tenants": [h[:100] for h in headers[:5]]})
    if header is None and principal.auth == "jwt":
        await adeny(request, services, 403, f"send the header `X-Tenant-ID: {tenant}` with a bearer JWT (it must "
             "equal the tenant in the URL)", code="missing_tenant_header", subject=who, tenant=tenant)
    if header is not None and header != tenant:
        await adeny(request, services, 403, f"X-Tenant-ID {header!r} does not match the URL tenant {tenant!r}",
             code="tenant_header_mismatch", subject=who, tenant=tenant,
             detail={"header_tenant": header[:100]})
    # A member of a configured tenant (a key of a tenant since removed from tenants.yaml is refused).
    denial = decide(principal, tenant, None, configured=services.registry.get(tenant) is not None)
    if denial is not None:
        await _arefuse(request, services, denial, subject=who, tenant=tenant)
    if (info := request_info.get()) is not None:  # the request's logs, metrics and span name the verified tenant
        info.tenant = tenant
    if recording():  # else the current span is the invalid one, which keeps nothing
        trace.get_current_span().set_attribute(TENANT, tenant)
    return TenantContext(principal=principal, tenant=tenant)


async def _arefuse(request: Request, services: Services, denial: Denial, *, subject: str, tenant: str) -> NoReturn:
    await adeny(request, services, denial.status, denial.message, code=denial.code, subject=subject, tenant=tenant,
                detail=denial.detail)


def require(permission: Permission) -> Callable[..., TenantContext]:
    """A dependency: the tenant guard plus `permission` (a role for people, a scope for API keys).

    One dependency that calls the principal and tenant checks itself rather than a chain of four: FastAPI's
    dependency solving per node was a measurable share of the API's own cost (bench/gateway)."""

    async def check(request: Request, tenant: Annotated[str, Path(description="tenant id")]) -> TenantContext:
        services: Services = request.app.state.services
        ctx = await get_tenant_context(request, services, await get_principal(request, services), tenant)
        denial = decide(ctx.principal, ctx.tenant, permission)
        if denial is None:
            return ctx
        await _arefuse(request, services, denial, subject=ctx.principal.subject, tenant=ctx.tenant)

    check.__name__ = f"require_{permission.replace(':', '_')}"
    return check


chat_access = require("chat")  # by name: the chat completion's fast path calls it itself (openai_compat.py)
ChatAccess = Annotated[TenantContext, Depends(chat_access)]
RetrievalAccess = Annotated[TenantContext, Depends(require("retrieval"))]
IngestAccess = Annotated[TenantContext, Depends(require("ingest"))]
PromptsRead = Annotated[TenantContext, Depends(require("prompts:read"))]
PromptsWrite = Annotated[TenantContext, Depends(require("prompts:write"))]
TenantAdmin = Annotated[TenantContext, Depends(require("admin"))]


def get_platform_admin(request: Request, services: ServicesDep, principal: PrincipalDep) -> Principal:
    """Platform operators (people only, never API keys), for the explicit /api/admin routes."""
    if not is_operator(principal):
        deny(request, services, 403, "this needs the platform_admin role", code="missing_role",
             subject=principal.subject, detail={"required": "platform_admin"})
    return principal


PlatformAdmin = Annotated[Principal, Depends(get_platform_admin)]
