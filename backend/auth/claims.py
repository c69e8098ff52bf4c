"""The single claims -> Principal mapping, shared by demo login, OIDC login and API JWTs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from backend.auth.principal import MEMBER, PLATFORM_ADMIN, AuthMethod, Principal
from backend.groups import Placement
from backend.tenants import ClaimRule, MemberOverride, TenantRegistry

_SURROGATE = re.compile("[\ud800-\udfff]")


def claim_values(claims: Mapping[str, Any], path: str) -> set[str]:
    """Values at a dotted claim path (e.g. `realm_access.roles`), as a set of strings."""
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return set()
        node = node[part]
    if isinstance(node, str):
        # Some IdPs send a single group as a string, or space-separated.
        return set(node.split())
    if isinstance(node, list | tuple | set):
        return {str(v) for v in node}
    if node is None:
        return set()
    return {str(node)}


def rule_matches(claims: Mapping[str, Any], rule: ClaimRule | MemberOverride) -> bool:
    return bool(claim_values(claims, rule.claim) & set(rule.any_of))


def claims_to_principal(
    claims: Mapping[str, Any], registry: TenantRegistry, *, auth: AuthMethod = "session"
) -> Principal:
    subject = _text(claims.get("sub") or claims.get("preferred_username") or "")
    if not subject:
        raise ValueError("claims carry no subject (sub)")
    tenants: dict[str, frozenset[str]] = {}
    elsewhere: dict[str, Placement] = {}
    limit_groups: dict[str, frozenset[str]] = {}
    for tenant in registry.every():
        if not rule_matches(claims, tenant.match):
            continue
        if (placement := registry.placement(tenant.id)) is not None:  # served by another deployment group
            elsewhere[tenant.id] = placement
            continue
        roles = {MEMBER} | {role for role, rule in tenant.roles.items() if rule_matches(claims, rule)}
        tenants[tenant.id] = frozenset(roles)
        if groups := frozenset(o.name for o in tenant.quotas.member_overrides if o.any_of and rule_matches(claims, o)):
            limit_groups[tenant.id] = groups
    platform = {PLATFORM_ADMIN} if rule_matches(claims, registry.platform.platform_admin) else set()
    name = _text(claims.get("name") or claims.get("preferred_username") or subject)
    email = claims.get("email")
    return Principal(
        subject=subject,
        name=name,
        tenants=tenants,
        platform_roles=frozenset(platform),
        auth=auth,
        email=_text(email) if email else None,
        elsewhere=elsewhere,
        limit_groups=limit_groups,
    )


def _text(value: Any) -> str:
    """A claim as text that UTF-8 can encode: an IdP may sign a lone UTF-16 surrogate ("\\ud800" in its JSON),
    which would otherwise fail later in SQL, logs and prompts; it becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", str(value))


def missing_access_hint(registry: TenantRegistry) -> str:
    """What to ask an administrator for, when claims map to no tenant."""
    groups = [f"{t.match.any_of[0]} ({t.name})" for t in registry.all() if t.match.any_of]
    return "ask your administrator to add you to one of the groups: " + ", ".join(groups)
