"""Build the LiteLLM Router from config/models.yaml: tiers, provider groups, fallbacks, env overrides.

The Router does the work (load balancing within a tier, retries, cooldowns, fallbacks across tiers);
this module only decides which deployments are live and how the groups and fallback chains look.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.settings import Settings

log = logging.getLogger("atrium.llm")

TIERS = ("local", "fast", "smart")
PREFERENCE_SEP = "@"  # `smart@anthropic`: the smart tier restricted to one provider


@dataclass
class ModelsConfig:
    model_list: list[dict[str, Any]]
    router_settings: dict[str, Any] = field(default_factory=dict)
    embedding_list: list[dict[str, Any]] = field(default_factory=list)
    # Prices for models LiteLLM does not know: model -> (input, output) USD per token.
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ModelsConfig:
        if not path.is_file():
            raise FileNotFoundError(f"models config not found at {path}: set ATRIUM_CONFIG_DIR")
        raw = yaml.safe_load(path.read_text()) or {}
        prices = {
            str(model): (float(p.get("input_cost_per_token", 0.0)), float(p.get("output_cost_per_token", 0.0)))
            for model, p in (raw.get("prices") or {}).items()
        }
        return cls(
            model_list=list(raw.get("model_list") or []),
            router_settings=dict(raw.get("router_settings") or {}),
            embedding_list=list(raw.get("embedding_list") or []),
            prices=prices,
        )


def provider_of(model: str) -> str:
    """`anthropic/claude-...` -> anthropic; a bare name is an OpenAI model for LiteLLM."""
    return model.split("/", 1)[0] if "/" in model else "openai"


def _env_ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return value.removeprefix("os.environ/")
    return None


def _provider_key_missing(model: str) -> str | None:
    """For an `ATRIUM_MODEL_<TIER>` override (no `api_key` in models.yaml): the provider's standard key
    variable when none of its alternatives is set (e.g. ANTHROPIC_API_KEY), per LiteLLM. Servers that need
    no key (vLLM, Ollama's default base) pass."""
    if model.startswith("local/"):
        return None
    import litellm

    try:
        env = litellm.validate_environment(model=model)
    except Exception:
        return None
    missing = [k for k in env.get("missing_keys") or [] if k.endswith("_API_KEY")]
    return " or ".join(missing) if missing and not env.get("keys_in_environment") else None


def _key_missing(params: dict[str, Any]) -> str | None:
    """The env var a deployment needs but lacks, if any."""
    for key in ("api_key", "api_base"):
        ref = _env_ref(params.get(key))
        if ref and not os.environ.get(ref):
            return ref
    return None


@dataclass(frozen=True)
class Deployment:
    id: str
    tier: str
    model: str
    provider: str


@dataclass
class LiveModels:
    deployments: list[dict[str, Any]]
    live: dict[str, list[str]]  # tier -> concrete models
    excluded: dict[str, str]  # deployment -> reason
    by_id: dict[str, Deployment] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)  # every Router model group (tiers + tier@provider)

    def providers(self, tier: str) -> list[str]:
        return sorted({d.provider for d in self.by_id.values() if d.tier == tier})


def live_deployments(config: ModelsConfig, settings: Settings, *, local_available: bool,
                     local_reason: str = "local model not installed (make bootstrap)") -> LiveModels:
    deployments: list[dict[str, Any]] = []
    excluded: dict[str, str] = {}
    overridden: set[str] = set()
    for tier in TIERS:
        override = settings.model_override(tier)
        if override:
            overridden.add(tier)
            if override.startswith("local/") and not local_available:
                excluded[f"{tier}:{override}"] = local_reason
                continue
            if missing := _provider_key_missing(override):
                excluded[f"{tier}:{override}"] = f"{missing} is not set (ATRIUM_MODEL_{tier.upper()})"
                continue
            deployments.append(
                {"model_name": tier, "litellm_params": {"model": override}, "model_info": {"id": f"{tier}-env"}}
            )
    for i, dep in enumerate(config.model_list):
        tier = dep["model_name"]
        model = dep["litellm_params"]["model"]
        label = f"{tier}:{model}"
        if tier in overridden:
            excluded[label] = f"ATRIUM_MODEL_{tier.upper()} overrides this tier"
            continue
        if model.startswith("local/") and not local_available:
            excluded[label] = local_reason
            continue
        missing = _key_missing(dep["litellm_params"])
        if missing:
            excluded[label] = f"{missing} is not set"
            continue
        dep = copy.deepcopy(dep)
        dep.setdefault("model_info", {}).setdefault("id", f"{tier}-{i}")
        deployments.append(dep)
    live: dict[str, list[str]] = {}
    by_id: dict[str, Deployment] = {}
    for dep in deployments:
        tier, model = dep["model_name"], dep["litellm_params"]["model"]
        live.setdefault(tier, []).append(model)
        by_id[dep["model_info"]["id"]] = Deployment(dep["model_info"]["id"], tier, model, provider_of(model))
    out = LiveModels(deployments=deployments, live=live, excluded=excluded, by_id=by_id, groups=set(live))
    _add_provider_groups(out)
    return out


def _add_provider_groups(live: LiveModels) -> None:
    """`tier@provider` groups let a tenant prefer a provider while the Router still balances/falls back.

    Only for tiers served by more than one provider (otherwise the tier itself is the preference)."""
    extra: list[dict[str, Any]] = []
    for tier in list(live.live):
        if len(live.providers(tier)) < 2:
            continue
        for dep in [d for d in live.deployments if d["model_name"] == tier]:
            base = live.by_id[dep["model_info"]["id"]]
            group = f"{tier}{PREFERENCE_SEP}{base.provider}"
            clone = copy.deepcopy(dep)
            clone["model_name"] = group
            clone["model_info"]["id"] = f"{base.id}{PREFERENCE_SEP}{base.provider}"
            live.by_id[clone["model_info"]["id"]] = Deployment(clone["model_info"]["id"], tier, base.model,
                                                               base.provider)
            live.groups.add(group)
            extra.append(clone)
    live.deployments.extend(extra)


def fallback_chains(live: LiveModels, router_settings: dict[str, Any]) -> list[dict[str, list[str]]]:
    """Configured tier fallbacks made transitive (smart -> fast -> local gives smart: [fast, local]),
    restricted to live tiers; a provider group falls back to its whole tier first."""
    direct: dict[str, list[str]] = {}
    for rule in router_settings.get("fallbacks") or []:
        for src, dsts in rule.items():
            direct.setdefault(src, []).extend(dsts)

    def chain(tier: str) -> list[str]:
        out: list[str] = []
        todo = list(direct.get(tier, []))
        while todo:
            nxt = todo.pop(0)
            if nxt == tier or nxt in out:
                continue
            out.append(nxt)
            todo.extend(direct.get(nxt, []))
        return [t for t in out if t in live.live]

    rules: list[dict[str, list[str]]] = []
    for group in sorted(live.groups):
        tier, _, provider = group.partition(PREFERENCE_SEP)
        dsts = ([tier] if provider else []) + chain(tier)
        if dsts:
            rules.append({group: dsts})
    return rules


def build_router(live: LiveModels, router_settings: dict[str, Any]) -> Any:
    from litellm import Router

    return Router(
        model_list=live.deployments,
        fallbacks=fallback_chains(live, router_settings),
        num_retries=int(router_settings.get("num_retries", 1)),
        timeout=float(router_settings.get("timeout", 120)),
        cooldown_time=float(router_settings.get("cooldown_time", 30)),
        allowed_fails=int(router_settings.get("allowed_fails", 2)),
        routing_strategy=str(router_settings.get("routing_strategy", "simple-shuffle")),
        # A provider's 400 (the request itself is wrong) is the caller's error: answering it from the next tier
        # would hide it behind a weaker model and bill the quota twice. LiteLLM still falls back on a context
        # window overflow or a content-policy refusal, which another model may well handle.
        fallback_on_unsupported_params=bool(router_settings.get("fallback_on_unsupported_params", False)),
    )
