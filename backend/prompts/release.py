"""Release rules: who may move which label (the four-eyes rule for `production` when a tenant asks)."""

from __future__ import annotations

from backend.auth.guard import allowed
from backend.auth.principal import Principal
from backend.tenants import TenantConfig

PRODUCTION = "production"


def approval_refusal(principal: Principal, tenant: TenantConfig, label: str,
                     authors: frozenset[str] | set[str]) -> str | None:
    """Why `principal` may not move `label` to a version written by `authors` (the author, and for a version
    saved with an API key the person who owns the key: the root of its chain, see people_behind), or None when
    allowed. `principal.people` likewise counts a key's owner (Principal.acting_for).

    With `require_approval: true`, production only moves when a tenant admin who did not write the
    version approves it by moving the label: nobody ships their own prompt alone, not even through an API
    key they minted for themselves.
    """
    if label != PRODUCTION or not tenant.require_approval:
        return None
    if not allowed(principal, tenant.id, "admin"):
        return (f"{tenant.name} requires approval: only a tenant admin can move production. "
                "Promote to staging and ask an admin to approve it.")
    if principal.people & set(authors):
        return (f"{tenant.name} requires approval by a second person: you wrote this version, so another "
                "tenant admin must promote it to production.")
    return None


def can_approve(principal: Principal, tenant: TenantConfig) -> bool:
    return not tenant.require_approval or allowed(principal, tenant.id, "admin")
