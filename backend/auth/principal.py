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
AllowanceBasis = tuple[frozenset[str], frozenset[str]]  # (roles, names of matching claim-group overrides)
NO_BASIS: AllowanceBasis = (frozenset(), frozenset())  # the default allowance (`quotas.member`)


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
    # An API key acting for a person: that person's roles and claim-group overrides in the key's tenant, resolved
    # from their claims when the key was verified (auth/key_owners.py); None: no person, or none known here.
    owner_basis: AllowanceBasis | None = None

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

    def allowance_basis(self, tenant: str) -> AllowanceBasis:
        """The roles and claim groups that choose the caller's member allowance in `tenant` (governance/
        allowances.py). An API key's calls count against its owner, so the owner's allowance applies, as their
        claims map now — never one the key's scopes would pick (an `admin`-scoped key of a plain member is not in
        the admins' override, a `chat` key of an admin is). A key with no person (CLI), or whose owner never
        signed in here or no longer belongs to the tenant: the default allowance."""
        if self.auth == "api_key":
            return self.owner_basis or NO_BASIS
        return self.roles_in(tenant), self.limit_groups.get(tenant, frozenset())

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
