"""Role-based access: which permission each role (humans) or scope (API keys) grants, in one table.

Permissions have the same names as API key scopes, so a key's scopes *are* its permissions.
"""

from __future__ import annotations

from typing import Literal

from backend.auth.principal import MEMBER, PROMPT_EDITOR, TENANT_ADMIN, Principal

Permission = Literal["chat", "retrieval", "ingest", "prompts:read", "prompts:write", "admin"]
PERMISSIONS: tuple[Permission, ...] = (
    "chat", "retrieval", "ingest", "prompts:read", "prompts:write", "admin",
)

# Roles are cumulative: an editor is a member, a tenant admin is an editor.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    MEMBER: frozenset({"chat", "retrieval", "prompts:read"}),  # members may see what their assistant is told
    PROMPT_EDITOR: frozenset({"chat", "retrieval", "prompts:read", "prompts:write"}),
    TENANT_ADMIN: frozenset(PERMISSIONS),
}

# The role a human needs for a permission (named in the 403 so users know what to ask for).
REQUIRED_ROLE: dict[str, str] = {
    "chat": MEMBER,
    "retrieval": MEMBER,
    "prompts:read": MEMBER,
    "prompts:write": PROMPT_EDITOR,
    "ingest": TENANT_ADMIN,
    "admin": TENANT_ADMIN,
}

# What a key's scopes amount to as roles, so role checks inside services (e.g. the staging prompt
# needs prompt_editor) agree with the scopes the key was given.
SCOPE_ROLES: dict[str, str] = {"prompts:write": PROMPT_EDITOR, "admin": TENANT_ADMIN}


def permissions_of(principal: Principal, tenant: str) -> frozenset[str]:
    """The permissions `principal` holds in `tenant` (empty when not a member)."""
    if not principal.is_member(tenant):
        return frozenset()
    if principal.scopes is not None:  # an API key: its scopes (writing prompts implies reading them)
        implied = {"prompts:read"} if "prompts:write" in principal.scopes else set()
        return frozenset(principal.scopes) | implied
    out: set[str] = set()
    for role in principal.roles_in(tenant):
        out |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(out)


def roles_for_scopes(scopes: frozenset[str] | set[str]) -> frozenset[str]:
    return frozenset({MEMBER} | {SCOPE_ROLES[s] for s in scopes if s in SCOPE_ROLES})
