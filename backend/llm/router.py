"""Build the LiteLLM Router from config/models.yaml: tiers, provider groups, fallbacks, env overrides.

The Router does the work (load balancing within a tier, retries, cooldowns, fallbacks across tiers);
this module only decides which deployments are live and how the groups and fallback chains look.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from backend.config_files import ConfigError, read_yaml
from backend.llm.answer_policy import check_answers
from backend.llm.router_settings import FALLBACK_KEYS, check_router_settings, fallback_rules, router_kwargs
from backend.settings import Settings

log = logging.getLogger("atrium.llm")

TIERS = ("local", "fast", "smart")
PREFERENCE_SEP = "@"  # `smart@anthropic`: the smart tier restricted to one provider
RETIREMENT_NOTICE_DAYS = 60  # providers announce retirements at least this long ahead (Anthropic: 60 days)


@dataclass
class ModelsConfig:
    model_list: list[dict[str, Any]]
    router_settings: dict[str, Any] = field(default_factory=dict)
    embedding_list: list[dict[str, Any]] = field(default_factory=list)
    # Prices for models LiteLLM does not know: model -> (input, output) USD per token.
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    # How each tier answers knowledge questions (llm/answer_policy.py): tier -> {mode, grounding_check}.
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    source: Path | None = None  # the models.yaml it was loaded from, named in errors

    @classmethod
    def load(cls, path: Path) -> ModelsConfig:
        path = Path(path).absolute()
        raw = read_yaml(path, what="models config") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with `model_list:`")
        prices = {
            str(model): (float(p.get("input_cost_per_token", 0.0)), float(p.get("output_cost_per_token", 0.0)))
            for model, p in (raw.get("prices") or {}).items()
        }
        return cls(
            model_list=list(raw.get("model_list") or []),
            router_settings=check_router_settings(raw.get("router_settings"), source=path),
            embedding_list=list(raw.get("embedding_list") or []),
            prices=prices,
            answers=check_answers(raw.get("answers"), source=path),
            source=path,
        )

    def tiers(self) -> list[str]:
        """The tiers a tenant may allow: local, fast and smart (a deployment or ATRIUM_MODEL_<TIER> makes them
        live, without editing this file) and any other model_name of the model list."""
        names = [str(d.get("model_name")) for d in self.model_list if isinstance(d, dict)]
        return list(dict.fromkeys([*TIERS, *names]))


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


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Retirement:
    """When the provider stops serving a model, per LiteLLM's model table (`deprecation_date`)."""

    on: date
    successor: str | None  # `provider/model`, as models.yaml names models


def table_entry(model: str) -> dict[str, Any] | None:
    """`model`'s row in LiteLLM's model table, or None. Provider-prefixed names are looked up as the table keys
    them (`anthropic/claude-sonnet-4-5` under `claude-sonnet-4-5`), but only in the same provider's rows: an
    Azure or Bedrock deployment has its own schedule and capabilities."""
    import litellm

    info = litellm.model_cost.get(model)
    if info is None and "/" in model:
        bare = litellm.model_cost.get(model.split("/", 1)[1])
        info = bare if bare and bare.get("litellm_provider") == provider_of(model) else None
    return info


def takes(model: str, param: str) -> bool:
    """Whether `model` accepts an advisory sampling/thinking preference (see LLMService.stream). Current models
    refuse a non-default `temperature`: Claude 4.7+ and Gemini 3.x say so in the table
    (`supports_sampling_params: false`), OpenAI's reasoning models (GPT-5/6) take it only with reasoning off.
    A model the table does not know (local, self-hosted OpenAI-compatible servers) takes temperature."""
    if model.startswith("local/"):
        return param == "temperature"
    info = table_entry(model) or {}
    if param == "temperature":
        if info.get("supports_sampling_params") is False:
            return False
        return not (info.get("litellm_provider") == "openai" and info.get("supports_reasoning"))
    if param == "reasoning_effort":
        return bool(info.get("supports_reasoning"))
    return True


def retirement(model: str) -> Retirement | None:
    """The retirement date of `model` in LiteLLM's model table, or None when it has none."""
    provider = provider_of(model)
    info = table_entry(model)
    raw = (info or {}).get("deprecation_date")
    if not raw:
        return None
    try:
        on = date.fromisoformat(str(raw))
    except ValueError:
        return None
    successor = (info or {}).get("successor_model")
    if successor and "/" not in successor:
        successor = f"{(info or {}).get('litellm_provider') or provider}/{successor}"
    return Retirement(on=on, successor=successor or None)


def _retirement_note(model: str, tier: str, today: date) -> tuple[bool, str] | None:
    """(retired?, what to tell the operator) for a model past or near its retirement date, else None."""
    r = retirement(model)
    if r is None or (r.on - today).days > RETIREMENT_NOTICE_DAYS:
        return None
    instead = (f"move to its successor {r.successor} (ATRIUM_MODEL_{tier.upper()}={r.successor}, or edit "
               "config/models.yaml)" if r.successor else "choose another model in config/models.yaml")
    if r.on <= today:
        return True, (f"{model} reached its retirement date on {r.on} (LiteLLM's model table): the provider refuses "
                      f"or redirects it; {instead}. A deployment whose provider still serves it: "
                      "`model_info: {ignore_retirement: true}`")
    return False, f"{model} retires on {r.on}: {instead}"


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
    retiring: dict[str, str] = field(default_factory=dict)  # live deployment -> its retirement date and successor
    groups: set[str] = field(default_factory=set)  # every Router model group (tiers + tier@provider)

    def providers(self, tier: str) -> list[str]:
        return sorted({d.provider for d in self.by_id.values() if d.tier == tier})


def live_deployments(config: ModelsConfig, settings: Settings, *, local_available: bool,
                     local_reason: str = "local model not installed (make bootstrap)",
                     today: date | None = None) -> LiveModels:
    today = today or utc_today()
    deployments: list[dict[str, Any]] = []
    excluded: dict[str, str] = {}
    retiring: dict[str, str] = {}
    overridden: set[str] = set()

    def retired(label: str, tier: str, model: str, *, keep: bool = False) -> bool:
        """Left out when past its retirement date (unless `keep`); reported when it is near."""
        note = _retirement_note(model, tier, today)
        if note is None:
            return False
        gone, why = note
        if gone and not keep:
            excluded[label] = why
            return True
        retiring[label] = why if not gone else f"{why} (kept: ignore_retirement)"
        return False
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
            if retired(f"{tier}:{override}", tier, override):
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
        if retired(label, tier, model, keep=bool((dep.get("model_info") or {}).get("ignore_retirement"))):
            continue
        dep = copy.deepcopy(dep)
        dep.setdefault("model_info", {}).pop("ignore_retirement", None)
        dep.setdefault("model_info", {}).setdefault("id", f"{tier}-{i}")
        deployments.append(dep)
    live: dict[str, list[str]] = {}
    by_id: dict[str, Deployment] = {}
    for dep in deployments:
        tier, model = dep["model_name"], dep["litellm_params"]["model"]
        live.setdefault(tier, []).append(model)
        by_id[dep["model_info"]["id"]] = Deployment(dep["model_info"]["id"], tier, model, provider_of(model))
    out = LiveModels(deployments=deployments, live=live, excluded=excluded, by_id=by_id, groups=set(live),
                     retiring=retiring)
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


def fallback_chains(live: LiveModels, router_settings: dict[str, Any],
                    kind: str = "fallbacks") -> list[dict[str, list[str]]]:
    """Configured tier fallbacks of one list (`fallbacks`, `context_window_fallbacks`,
    `content_policy_fallbacks`) made transitive (smart -> fast -> local gives smart: [fast, local]),
    restricted to live tiers; a provider group falls back to its whole tier first (`fallbacks` only).
    `default_fallbacks` (LiteLLM: for every group) ends each `fallbacks` chain, so it is narrowed per tenant
    like the rest instead of reaching the Router as a catch-all rule."""
    direct: dict[str, list[str]] = {}
    for rule in fallback_rules(router_settings, kind):
        for src, dsts in rule.items():
            direct.setdefault(src, []).extend(dsts)
    catch_all = list(router_settings.get("default_fallbacks") or []) if kind == "fallbacks" else []

    def chain(tier: str) -> list[str]:
        out: list[str] = []
        for todo in (list(direct.get(tier, [])), list(catch_all)):  # the tier's own chain, then the catch-all
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
        dsts = ([tier] if provider and kind == "fallbacks" else []) + chain(tier)
        if dsts:
            rules.append({group: dsts})
    return rules


def build_router(live: LiveModels, router_settings: dict[str, Any], *, redis_url: str | None = None,
                 redis_prefix: str | None = None) -> Any:
    """LiteLLM's Router with every router_settings key of models.yaml (router_settings.py), the fallback lists
    per live group, and, given `redis_url`, cooldowns shared with every other replica on that Redis (its keys under
    `redis_prefix`).
    Atrium's defaults keep `fallback_on_unsupported_params: false`: a provider's 400 (the request itself is
    wrong) is the caller's error; answering it from the next tier would hide it behind a weaker model and bill
    the quota twice. LiteLLM still falls back on a context window overflow or a content-policy refusal."""
    from litellm import Router

    return Router(model_list=live.deployments,
                  **{kind: fallback_chains(live, router_settings, kind) for kind in FALLBACK_KEYS},
                  **router_kwargs(router_settings, redis_url=redis_url, redis_prefix=redis_prefix))
