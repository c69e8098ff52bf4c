"""The tenants registry, loaded from config/tenants.yaml (configuration, not code)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from backend.config_files import ConfigError, check_keys, describe_errors, read_yaml
from backend.groups import DEFAULT_GROUP, GroupConfig, Placement, parse_served
from backend.monitoring import MonitoringConfig

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def is_slug(value: str) -> bool:
    return bool(SLUG_RE.fullmatch(value))


def _slug(value: str) -> str:
    if not is_slug(value):
        raise ValueError(f"{value!r} must be a lowercase slug (a-z, 0-9, -; up to 63 characters)")
    return value


# Tenant ids and assistant names become folder names and vector-store namespaces.
Slug = Annotated[str, AfterValidator(_slug)]
# The roles a rule can grant (backend/auth/principal.py; member is implied by `match`): any other name under
# `roles:` is a typo that would silently grant nothing.
RoleName = Literal["prompt_editor", "tenant_admin"]


class _Strict(BaseModel):
    # An unknown key is a start-up error naming the closest valid one: `token_per_day:` must not silently mean
    # "unlimited", nor `asistants:` a department without assistants.
    model_config = ConfigDict(extra="forbid")


class ClaimRule(_Strict):
    """Matches when the claim at a dotted path contains (or equals) one of the values."""

    claim: str = "groups"
    any_of: list[str] = Field(default_factory=list)


class AssistantConfig(_Strict):
    name: Slug
    title: str
    description: str = ""
    starters: list[str] = Field(default_factory=list)  # example questions shown on a new chat


class ModelPolicy(_Strict):
    allowed_tiers: list[str] = Field(default_factory=lambda: ["local", "fast", "smart"])
    default_tier: str = "local"
    routing: Literal["fixed", "auto"] = "fixed"
    provider_preference: list[str] = Field(default_factory=list)
    features: dict[str, object] = Field(default_factory=dict)


class MemberAllowance(_Strict):
    """One member's share inside the tenant's quotas (each optional: null/absent = only the tenant's limits)."""

    tokens_per_day: int | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)


class MemberOverride(MemberAllowance):
    """The allowance of the members with a role (`role: tenant_admin`) or in a claim group (`claim` + `any_of`);
    the first override that matches applies, its unset fields taken from `quotas.member`."""

    name: Slug  # named in the member's messages and the admin view ("your allowance (interns)")
    role: Literal["member", "prompt_editor", "tenant_admin"] | None = None
    claim: str = "groups"
    any_of: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _matches_someone(self) -> MemberOverride:
        if self.role is None and not self.any_of:
            raise ValueError(f"member override {self.name!r} matches nobody: give it a `role:` or `any_of:` groups")
        return self


class AssistantBudget(_Strict):
    monthly_budget_usd: float | None = Field(default=None, ge=0)


class Quotas(_Strict):
    """null or absent: unlimited; 0: blocked (the tenant's model calls are switched off); negative: a config error
    at start-up (a typo must not silently mean "unlimited" or "blocked").

    Nested limits, each optional, inside the tenant's: `member` (every member's allowance), `member_overrides`
    (per role or claim group), `assistants` (an assistant's own monthly budget). `on_budget`: what a call that no
    longer fits its tier's budget gets — `refuse` (a 429), or `downgrade` (the next cheaper allowed tier that
    fits answers, saying so)."""

    requests_per_minute: int | None = Field(default=None, ge=0)
    user_requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    on_budget: Literal["refuse", "downgrade"] = "refuse"
    member: MemberAllowance = Field(default_factory=MemberAllowance)
    member_overrides: list[MemberOverride] = Field(default_factory=list)
    assistants: dict[str, AssistantBudget] = Field(default_factory=dict)

    @property
    def has_member_limits(self) -> bool:
        return any(v is not None for a in (self.member, *self.member_overrides)
                   for v in (a.tokens_per_day, a.monthly_budget_usd))


class TenantLimits(_Strict):
    """What one tenant may hold at once inside one process (the "resource limits at the tenant level"): over a cap,
    a call is refused with a 429 naming it. null = no cap. Unset fields take `defaults.limits`."""

    model_calls: int | None = Field(default=None, ge=1)  # in flight: chat turns, API, studio tries, searches
    streams: int | None = Field(default=None, ge=1)  # streaming answers open (chat and API streams)
    ingestion_jobs: int | None = Field(default=None, ge=1)  # its documents being ingested at once, over all workers
    uploads: int | None = Field(default=None, ge=1)  # uploads being received and stored at once (API, chat)


class TenantDefaults(_Strict):
    limits: TenantLimits = Field(default_factory=lambda: TenantLimits(model_calls=8, streams=8, ingestion_jobs=1,
                                                                      uploads=4))


class DifyConfig(_Strict):
    app_key_env: str | None = None


class ReleaseGate(_Strict):
    """Promoting a version to `production` needs evidence (backend/evals/gate.py): a finished test run of that version
    on the current knowledge base with no case that passes on production's latest run failing on it, and at least
    `min_score` of the cases passing when set. Off by default; a tenant admin may override with a reason (audited)."""

    enabled: bool = False
    min_score: float | None = Field(default=None, ge=0, le=1)  # the share of cases that must pass, 0..1


class TenantConfig(_Strict):
    id: Slug
    name: str
    match: ClaimRule
    roles: dict[RoleName, ClaimRule] = Field(default_factory=dict)
    # At least one: a department without an assistant has nothing to chat with (and is surely a mistake).
    assistants: list[AssistantConfig] = Field(min_length=1)
    model_policy: ModelPolicy = Field(default_factory=ModelPolicy)
    quotas: Quotas = Field(default_factory=Quotas)
    require_approval: bool = False
    release_gate: ReleaseGate = Field(default_factory=ReleaseGate)
    deployment_group: Slug = DEFAULT_GROUP  # a key of deployment_groups (backend/groups.py)
    limits: TenantLimits = Field(default_factory=TenantLimits)
    dify: DifyConfig = Field(default_factory=DifyConfig)

    def assistant(self, name: str) -> AssistantConfig | None:
        return next((a for a in self.assistants if a.name == name), None)

    @model_validator(mode="after")
    def _budgeted_assistants_exist(self) -> TenantConfig:
        for name in self.quotas.assistants:
            if self.assistant(name) is None:  # a typo must not leave the expensive assistant uncapped
                raise ValueError(f"quotas.assistants: {name!r} is not one of this tenant's assistants "
                                 f"({', '.join(a.name for a in self.assistants)})")
        return self


class PlatformConfig(_Strict):
    platform_admin: ClaimRule = Field(default_factory=lambda: ClaimRule(any_of=["atrium-admins"]))


FILE_KEYS = ("platform", "defaults", "deployment_groups", "monitoring", "tenants")
# Added to a wrong value of these fields: what a valid one is.
_HINTS = {
    "quotas": "a quota is null for unlimited, 0 to block, or a positive number",
    "limits": "a limit is null for no cap or a positive number (to switch a tenant's model calls off, set "
              "quotas.requests_per_minute: 0)",
    "assistants": "a department needs at least one assistant, each with a `name:` and a `title:`, and its "
                  "prompt folder prompts/<tenant>/<name>/",
}


class TenantRegistry:
    """Every tenant of tenants.yaml, and the ones this process serves.

    `get`, `all` and `ids` see only the served tenants (those of ATRIUM_DEPLOYMENT_GROUPS; unset: every one): for
    this process the others do not exist. `locate` and `every` see the whole file, for saying where a tenant of
    another group is served and for rendering the manifests.
    """

    def __init__(self, tenants: list[TenantConfig], platform: PlatformConfig | None = None,
                 *, source: Path | None = None, groups: dict[str, GroupConfig] | None = None,
                 defaults: TenantDefaults | None = None, served: str | None = None,
                 monitoring: MonitoringConfig | None = None) -> None:
        self.source = source  # the tenants.yaml it was loaded from, named in errors
        where = source or "tenants config"
        ids = [t.id for t in tenants]
        for tid in dict.fromkeys(ids):
            if ids.count(tid) > 1:
                raise ConfigError(f"{where}: tenant id {tid!r} is used by {ids.count(tid)} tenants: "
                                  "give each tenant its own id")
        self._every = {t.id: t for t in tenants}
        self.platform = platform or PlatformConfig()
        self.defaults = defaults or TenantDefaults()
        self.monitoring = monitoring or MonitoringConfig()  # for the manifests only (backend/monitoring.py)
        self._limits = {t.id: self._merged_limits(t.limits) for t in tenants}
        named = list(dict.fromkeys(t.deployment_group for t in tenants))
        if groups is None:  # no `deployment_groups:` section: every group a tenant names, with default sizes
            groups = {name: GroupConfig() for name in named or [DEFAULT_GROUP]}
        for t in tenants:
            if t.deployment_group not in groups:
                close = difflib.get_close_matches(t.deployment_group, list(groups), n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                raise ConfigError(
                    f"{where}: tenant {t.id!r}: deployment_group `{t.deployment_group}` is not one of "
                    f"deployment_groups ({', '.join(groups)}): {hint}add it under `deployment_groups:` or fix the name")
        self.groups = groups
        self.served_groups = parse_served(served, known=list(groups), where=str(where))
        self._tenants = {t.id: t for t in tenants
                         if self.served_groups is None or t.deployment_group in self.served_groups}

    @classmethod
    def load(cls, path: Path, *, served: str | None = None) -> TenantRegistry:
        """`served`: ATRIUM_DEPLOYMENT_GROUPS (comma-separated group names; None = every group)."""
        path = Path(path).absolute()
        raw = read_yaml(path, what="tenants config") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with `tenants:` (and optionally `platform:`)")
        check_keys(raw, FILE_KEYS, where=str(path))
        if not isinstance(raw.get("tenants") or [], list):
            raise ConfigError(f"{path}: `tenants:` must be a list of tenants (`- id: …` entries)")
        tenants: list[TenantConfig] = []
        for i, t in enumerate(raw.get("tenants") or [], start=1):
            try:
                tenants.append(TenantConfig.model_validate(t))
            except ValidationError as exc:  # name the file, the tenant and the field: this stops the start-up
                tid = t.get("id") if isinstance(t, dict) else None
                problems = describe_errors(exc, TenantConfig, _HINTS)
                raise ConfigError(f"{path}: tenant {tid or f'#{i}'!r}: {problems}") from None
        try:
            platform = PlatformConfig.model_validate(raw.get("platform") or {})
        except ValidationError as exc:
            raise ConfigError(f"{path}: platform: {describe_errors(exc, PlatformConfig)}") from None
        try:
            defaults = TenantDefaults.model_validate(raw.get("defaults") or {})
        except ValidationError as exc:
            raise ConfigError(f"{path}: defaults: {describe_errors(exc, TenantDefaults)}") from None
        body = raw.get("monitoring")
        if body is not None and not isinstance(body, dict):  # `monitoring: false` would read as "the defaults"
            raise ConfigError(f"{path}: monitoring: expected a mapping with scraper, pod_monitoring and "
                              f"otlp_collector (got {body!r}); to open nothing set `scraper: null` and "
                              "`pod_monitoring: false`")
        try:
            monitoring = MonitoringConfig.model_validate(body or {})
        except ValidationError as exc:
            raise ConfigError(f"{path}: monitoring: {describe_errors(exc, MonitoringConfig)}") from None
        groups = None
        if raw.get("deployment_groups") is not None:
            if not isinstance(raw["deployment_groups"], dict) or not raw["deployment_groups"]:
                raise ConfigError(f"{path}: `deployment_groups:` must map group names to their settings "
                                  "(e.g. `default: {public_url: https://atrium.example.com}`)")
            groups = {}
            for name, body in raw["deployment_groups"].items():
                if not isinstance(name, str) or not is_slug(name):
                    raise ConfigError(f"{path}: deployment_groups: {name!r} must be a lowercase slug "
                                      "(a-z, 0-9, -): it names Kubernetes objects")
                try:
                    groups[name] = GroupConfig.model_validate(body or {})
                except ValidationError as exc:
                    raise ConfigError(f"{path}: deployment_groups: {name}: "
                                      f"{describe_errors(exc, GroupConfig)}") from None
        return cls(tenants, platform, source=path, groups=groups, defaults=defaults, served=served,
                   monitoring=monitoring)

    def check_tiers(self, configured: Collection[str], *, models_path: Path) -> None:
        """Every tenant's model_policy names configured tiers, and its default tier is one it allows: a typo
        (`turbo`) would otherwise only show as a tier that is never live."""
        where = self.source or "tenants config"
        for t in self._tenants.values():
            policy = t.model_policy
            for tier in policy.allowed_tiers:
                if tier not in configured:
                    close = difflib.get_close_matches(tier, list(configured), n=1)
                    hint = f"did you mean `{close[0]}`? " if close else ""
                    raise ConfigError(
                        f"{where}: tenant {t.id!r}: model_policy.allowed_tiers: `{tier}` is not a configured tier "
                        f"(configured: {', '.join(configured)}: local, fast, smart and the model_name values of "
                        f"{models_path}): {hint}"
                        "remove it, or add a deployment with that model_name to models.yaml")
            if policy.default_tier not in policy.allowed_tiers:
                raise ConfigError(
                    f"{where}: tenant {t.id!r}: model_policy.default_tier `{policy.default_tier}` is not in "
                    f"allowed_tiers [{', '.join(policy.allowed_tiers)}] (configured tiers: {', '.join(configured)}): "
                    "set default_tier to one of the allowed tiers, or allow it")

    def get(self, tenant_id: str) -> TenantConfig | None:
        """A tenant this process serves (None for one of another deployment group: see `locate`)."""
        return self._tenants.get(tenant_id)

    def all(self) -> list[TenantConfig]:
        return list(self._tenants.values())

    def ids(self) -> list[str]:
        return list(self._tenants)

    def every(self) -> list[TenantConfig]:
        """Every tenant of the file, served here or not (manifests, routing, "served elsewhere" answers)."""
        return list(self._every.values())

    def locate(self, tenant_id: str) -> TenantConfig | None:
        """A tenant of the file, wherever it is served."""
        return self._every.get(tenant_id)

    def is_served(self, tenant_id: str) -> bool:
        return tenant_id in self._tenants

    def group_of(self, tenant_id: str) -> tuple[str, GroupConfig] | None:
        t = self._every.get(tenant_id)
        return (t.deployment_group, self.groups[t.deployment_group]) if t else None

    def placement(self, tenant_id: str) -> Placement | None:
        """Where a tenant of the file that this process does not serve is served; None when it is served here or
        is in no group at all (unknown)."""
        t = self._every.get(tenant_id)
        if t is None or tenant_id in self._tenants:
            return None
        here = tuple(sorted(self.served_groups)) if self.served_groups is not None else tuple(self.groups)
        return Placement(tenant=t.id, tenant_name=t.name, group=t.deployment_group,
                         public_url=self.groups[t.deployment_group].public_url, here=here)

    def not_here(self, tenant_id: str) -> str:
        """Why a command cannot act on `tenant_id` here: another deployment group serves it, or it is unknown."""
        if (p := self.placement(tenant_id)) is not None:
            return (f"tenant {tenant_id!r} is served by deployment group {p.group!r}, not by this process's "
                    f"({', '.join(p.here)}): run the command with ATRIUM_DEPLOYMENT_GROUPS={p.group}")
        return f"unknown tenant {tenant_id!r}; known: {', '.join(self.ids())}"

    def limits(self, tenant_id: str) -> TenantLimits:
        """The tenant's in-process caps, each unset field taken from `defaults.limits` (merged once, at load: this
        is asked on every model call)."""
        return self._limits.get(tenant_id) or self.defaults.limits

    def _merged_limits(self, own: TenantLimits) -> TenantLimits:
        base = self.defaults.limits
        return TenantLimits(**{f: getattr(own, f) if f in own.model_fields_set else getattr(base, f)
                               for f in TenantLimits.model_fields})
