"""The tenants registry, loaded from config/tenants.yaml (configuration, not code)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def is_slug(value: str) -> bool:
    return bool(SLUG_RE.fullmatch(value))


def _slug(value: str) -> str:
    if not is_slug(value):
        raise ValueError(f"{value!r} must be a lowercase slug (a-z, 0-9, -; up to 63 characters)")
    return value


# Tenant ids and assistant names become folder names and vector-store namespaces.
Slug = Annotated[str, AfterValidator(_slug)]


class ClaimRule(BaseModel):
    """Matches when the claim at a dotted path contains (or equals) one of the values."""

    claim: str = "groups"
    any_of: list[str] = Field(default_factory=list)


class AssistantConfig(BaseModel):
    name: Slug
    title: str
    description: str = ""
    starters: list[str] = Field(default_factory=list)  # example questions shown on a new chat


class ModelPolicy(BaseModel):
    allowed_tiers: list[str] = Field(default_factory=lambda: ["local", "fast", "smart"])
    default_tier: str = "local"
    routing: Literal["fixed", "auto"] = "fixed"
    provider_preference: list[str] = Field(default_factory=list)
    features: dict[str, object] = Field(default_factory=dict)


class Quotas(BaseModel):
    """null or absent: unlimited; 0: blocked (the tenant's model calls are switched off); negative: a config error
    at start-up (a typo must not silently mean "unlimited" or "blocked")."""

    requests_per_minute: int | None = Field(default=None, ge=0)
    user_requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)


class DifyConfig(BaseModel):
    app_key_env: str | None = None


class TenantConfig(BaseModel):
    id: Slug
    name: str
    match: ClaimRule
    roles: dict[str, ClaimRule] = Field(default_factory=dict)
    assistants: list[AssistantConfig] = Field(default_factory=list)
    model_policy: ModelPolicy = Field(default_factory=ModelPolicy)
    quotas: Quotas = Field(default_factory=Quotas)
    require_approval: bool = False
    deployment_group: str = "default"
    dify: DifyConfig = Field(default_factory=DifyConfig)

    def assistant(self, name: str) -> AssistantConfig | None:
        return next((a for a in self.assistants if a.name == name), None)


class PlatformConfig(BaseModel):
    platform_admin: ClaimRule = Field(default_factory=lambda: ClaimRule(any_of=["atrium-admins"]))


class TenantRegistry:
    def __init__(self, tenants: list[TenantConfig], platform: PlatformConfig | None = None) -> None:
        ids = [t.id for t in tenants]
        if len(ids) != len(set(ids)):
            raise ValueError("config/tenants.yaml: tenant ids must be unique")
        self._tenants = {t.id: t for t in tenants}
        self.platform = platform or PlatformConfig()

    @classmethod
    def load(cls, path: Path) -> TenantRegistry:
        if not path.is_file():
            raise FileNotFoundError(f"tenants config not found at {path}: set ATRIUM_CONFIG_DIR")
        raw = yaml.safe_load(path.read_text()) or {}
        tenants: list[TenantConfig] = []
        for i, t in enumerate(raw.get("tenants") or [], start=1):
            try:
                tenants.append(TenantConfig.model_validate(t))
            except ValidationError as exc:  # name the file, the tenant and the field: this stops the start-up
                tid = t.get("id") if isinstance(t, dict) else None
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}"
                                     f" (got {e['input']!r})" for e in exc.errors())
                if any(e["loc"][:1] == ("quotas",) for e in exc.errors()):
                    problems += " (a quota is null for unlimited, 0 to block, or a positive number)"
                raise ValueError(f"{path}: tenant {tid or f'#{i}'!r}: {problems}") from None
        return cls(tenants, PlatformConfig.model_validate(raw.get("platform") or {}))

    def get(self, tenant_id: str) -> TenantConfig | None:
        return self._tenants.get(tenant_id)

    def all(self) -> list[TenantConfig]:
        return list(self._tenants.values())

    def ids(self) -> list[str]:
        return list(self._tenants)
