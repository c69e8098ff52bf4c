"""The one access decision, the one way from a browser session to a principal, and the one record of a refusal.

`decide(principal, tenant, permission)` answers whether a verified principal may do something in a tenant — the
API's dependencies, every service, the chat's UI handlers and the surface guard in front of the chat all ask it,
so a role, a scope or a membership means the same everywhere. `AccessGuard` adds the audit record of a refusal
for code that has no request at hand (services, the chat). Which permission each role or scope grants is the
table in rbac.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from backend.auth.principal import Principal
from backend.auth.rbac import REQUIRED_ROLE, permissions_of
from backend.errors import Forbidden, Misdirected, NotAuthenticated


class SessionVerdict(Protocol):
    """A browser session token's verdict (auth/sessions.py SessionCheck): its payload when valid, else why not."""

    payload: dict | None
    reason: str | None
    subject: str | None

    @property
    def message(self) -> str: ...


class SessionVerifier(Protocol):
    def verify(self, token: str | None) -> SessionVerdict: ...


class AuditSink(Protocol):
    """Where refusals are recorded (governance's AuditLog; injected, so auth does not import governance)."""

    def record(self, kind: str, **fields: Any) -> object: ...


@dataclass(frozen=True)
class Denial:
    code: str  # tenant_mismatch | served_elsewhere | tenant_not_configured | missing_scope | missing_role | ...
    message: str  # what the caller can do about it
    status: int = 403
    detail: dict[str, Any] = field(default_factory=dict)


def decide(principal: Principal, tenant: str, permission: str | None, *, configured: bool = True) -> Denial | None:
    """None when `principal` may do `permission` in `tenant` (`permission=None`: be a member of it), else why not.
    `configured`: whether the tenant is in tenants.yaml (a key of a removed tenant is refused).

    A tenant of the caller's that another deployment group serves (ATRIUM_DEPLOYMENT_GROUPS) is a 421 naming that
    group and its address: the request reached the wrong process, and only a verified caller of that tenant is told
    so (an anonymous one gets the 401 first, anyone else the 403 of a tenant that is not theirs, as everywhere)."""
    if (placement := principal.elsewhere.get(tenant)) is not None:
        return Denial("served_elsewhere", placement.message(), status=421, detail=placement.public())
    if not principal.is_member(tenant):
        message = (f"this API key belongs to another tenant, not {tenant!r}" if principal.auth == "api_key"
                   else f"you are not a member of tenant {tenant!r}")
        return Denial("tenant_mismatch", message, detail={"member_of": sorted(principal.tenants)})
    if not configured:
        return Denial("tenant_not_configured", f"tenant {tenant!r} is not configured (config/tenants.yaml): its API "
                      "keys work again once it is added back")
    if permission is None or permission in permissions_of(principal, tenant):
        return None
    if principal.scopes is not None:
        return Denial("missing_scope", f"this API key lacks the scope {permission!r}",
                      detail={"required": permission, "scopes": sorted(principal.scopes)})
    role = REQUIRED_ROLE.get(permission, "tenant_admin")
    return Denial("missing_role", f"this needs the {role} role in tenant {tenant!r} ({permission}); ask your "
                  "administrator", detail={"required": permission, "role": role,
                                           "roles": sorted(principal.roles_in(tenant))})


def is_operator(principal: Principal) -> bool:
    """A platform operator: the platform_admin role, and a person (an API key never acts across tenants)."""
    return principal.is_platform_admin and principal.scopes is None


def allowed(principal: Principal, tenant: str, permission: str | None) -> bool:
    """For what a page offers (the paperclip, the staging profiles): the same decision, without a record."""
    return decide(principal, tenant, permission) is None


class AccessGuard:
    """`decide` plus the audit record of a refusal, for services and the chat's handlers."""

    def __init__(self, *, audit: AuditSink, configured: Callable[[str], bool]) -> None:
        self.audit = audit
        self.configured = configured

    def check(self, principal: Principal, tenant: str, permission: str | None, *, route: str,
              ip: str | None = None) -> None:
        """Return when allowed; else record the refusal and raise it (403 Forbidden with the reason code)."""
        denial = decide(principal, tenant, permission, configured=self.configured(tenant))
        if denial is not None:
            self.refuse(denial, subject=principal.subject, tenant=tenant, route=route, ip=ip)

    def refuse(self, denial: Denial, *, subject: str | None, tenant: str | None, route: str,
               ip: str | None = None, method: str | None = None, headers: dict[str, str] | None = None) -> NoReturn:
        self.record(denial, subject=subject, tenant=tenant, route=route, ip=ip, method=method)
        if denial.status == 421:  # the body names the group that serves the tenant, and where it is
            raise Misdirected(denial.message, code=denial.code, headers=headers, extra=denial.detail)
        raise (NotAuthenticated if denial.status == 401 else Forbidden)(denial.message, code=denial.code,
                                                                        headers=headers)

    def record(self, denial: Denial, *, subject: str | None, tenant: str | None, route: str,
               ip: str | None = None, method: str | None = None) -> None:
        detail = {"message": denial.message, **denial.detail}
        if method:
            detail["method"] = method
        self.audit.record("denied", subject=subject, tenant=tenant, route=route, ip=ip, status=denial.status,
                          reason=denial.code, detail=detail)


# -- sessions ---------------------------------------------------------------------------------------------------------


def principal_of_claims(claims: object, to_principal: Callable[[dict], Principal]) -> Principal | None:
    """The principal of a verified browser session's claims (re-derived on every use: a tenants.yaml change
    applies without a new sign-in), or None when there are none or they map to nobody."""
    if not isinstance(claims, dict):
        return None
    try:
        return to_principal(claims)
    except ValueError:
        return None


def session_claims(payload: dict | None) -> dict | None:
    """The sign-in's claims carried by a verified session token's payload (Chainlit's user metadata)."""
    claims = ((payload or {}).get("metadata") or {}).get("claims")
    return claims if isinstance(claims, dict) else None


@dataclass(frozen=True)
class SessionCaller:
    """Who a browser session is: the principal, or why there is none (`check.reason` when the session itself is
    refused; `unmappable` when its claims map to nobody any more)."""

    principal: Principal | None
    check: SessionVerdict
    unmappable: str | None = None


def session_principal(token: str | None, *, sessions: SessionVerifier,
                      to_principal: Callable[[dict], Principal]) -> SessionCaller:
    """The one way from a browser session (Chainlit's signed cookie) to a principal: the session is verified
    (signature, lifetime since the sign-in, not signed out or ended: sessions.py), then its claims are mapped.
    Used by the API's dependencies, the pages, the surface guard and the chat's socket."""
    check = sessions.verify(token)
    claims = session_claims(check.payload)
    if claims is None:
        return SessionCaller(None, check)
    try:
        return SessionCaller(to_principal(claims), check)
    except ValueError as exc:
        return SessionCaller(None, check, unmappable=str(exc))
