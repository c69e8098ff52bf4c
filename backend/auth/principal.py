"""The verified caller. Everything tenant-scoped takes its tenant from here, never from input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from backend.groups import Placement

CLI_OWNER = "cli"  # a key the CLI made has no person behind it (auth/api_keys.py)

MEMBER = "member"
PROMPT_EDITOR = "prompt_editor"
TENANT_ADMIN = "tenant_admin"
PLATFORM_ADMIN = "platform_admin"

AuthMethod = Literal["session", "jwt", "api_key", "cli"]


@dataclass(frozen=True)
class Principal:
    subject: str
    name: str
    # tenant id -> roles in that tenant (always includes "member")
    tenants: dict[str, frozenset[str]] = field(default_factory=dict)
    platform_roles: frozenset[str] = frozenset()
    auth: AuthMethod = "session"
    # API keys carry scopes; None means "not a key caller" (roles decide).
    scopes: frozenset[str] | None = None
    key_id: str | None = None
    email: str | None = None
    # An API key acts for the person who created it: the four-eyes rule counts them, not the key.
    acting_for: str | None = None
    # The tenants the caller belongs to that another deployment group serves (ATRIUM_DEPLOYMENT_GROUPS): not
    # memberships here (`tenants` holds only served ones, so nothing here can act in them), only where they are.
    elsewhere: dict[str, Placement] = field(default_factory=dict)
    # tenant id -> the names of its `quotas.member_overrides` whose claim group the caller is in (the allowance
    # is chosen per call: governance/allowances.py); role overrides are matched from `tenants`.
    limit_groups: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def people(self) -> frozenset[str]:
        """Who is behind this request: the subject, and for an API key the subject who created it."""
        return frozenset(p for p in (self.subject, self.acting_for) if p)

    @property
    def member(self) -> str:
        """Whose allowance a call counts against (governance/allowances.py): an API key's calls count against the
        person at the root of its chain (a key is not a way out of one's own allowance); a key with no person (made
        by the CLI or before keys recorded an owner) has its own allowance under its subject `key:<id>`."""
        if self.auth == "api_key" and self.acting_for and self.acting_for != CLI_OWNER:
            return self.acting_for
        return self.subject

    def is_member(self, tenant: str) -> bool:
        return tenant in self.tenants

    def roles_in(self, tenant: str) -> frozenset[str]:
        return self.tenants.get(tenant, frozenset())

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN in self.platform_roles

    def public(self) -> dict:
        return {
            "subject": self.subject,
            "name": self.name,
            "email": self.email,
            "auth": self.auth,
            "tenants": {t: sorted(r) for t, r in self.tenants.items()},
            "platform_roles": sorted(self.platform_roles),
            "scopes": sorted(self.scopes) if self.scopes is not None else None,
            "elsewhere": {t: p.public() for t, p in sorted(self.elsewhere.items())},
        }
