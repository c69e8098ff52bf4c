"""LLMService: the one way backend code calls a model (streaming or not), with usage and cost."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import StatusCode

from backend.governance.metrics import NoMetrics
from backend.llm.fair import model_tenant
from backend.llm.litellm_quiet import quiet_litellm, use_callbacks
from backend.llm.local_provider import LocalLlama, register
from backend.llm.pricing import Prices
from backend.llm.router import (
    PREFERENCE_SEP,
    Deployment,
    LiveModels,
    ModelsConfig,
    build_router,
    fallback_chains,
    live_deployments,
    takes,
)
from backend.llm.router_settings import FALLBACK_KEYS
from backend.settings import Settings
from backend.tracing import TENANT, start_span

log = logging.getLogger("atrium.llm")

INTERNAL_TIER = "fast"  # titles, query rewriting: always the cheap tier (or the best live one below it)


class NoModelAvailable(RuntimeError):
    pass


class UnsupportedParameter(ValueError):
    """A caller's parameter that the models of the tier asked for cannot take (the caller's 400)."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class Completion:
    text: str
    model: str
    tier: str  # the tier that answered (differs from the requested one after a fallback)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    requested: str = ""  # the Router group asked for (a tier or tier@provider)
    fallback_from: str | None = None  # set when another group answered
    deployment_id: str | None = None
    finish_reason: str = "stop"  # "length" when max_tokens cut the answer


@dataclass
class Delta:
    text: str
    model: str | None = None  # the deployment streaming it, when known (a cancelled turn is billed to it)


class LLMService:
    def __init__(self, *, settings: Settings, config: ModelsConfig, local: LocalLlama | None = None) -> None:
        self.settings = settings
        self.config = config
        self.local = local or LocalLlama(n_threads=settings.llm_threads, n_ctx=settings.llm_context,
                                         model_path=settings.local_model_path)
        register(self.local)
        quiet_litellm()
        use_callbacks(settings.litellm_callback_list)
        self.metrics: NoMetrics = NoMetrics()  # the container's (governance/metrics.py): errors by tier
        unavailable = self.local.unavailable_reason()
        self.live: LiveModels = live_deployments(config, settings, local_available=unavailable is None,
                                                 local_reason=unavailable or "")
        for label, reason in self.live.excluded.items():
            log.info("model deployment left out", extra={"deployment": label, "reason": reason})
        for label, reason in self.live.retiring.items():
            log.warning("model deployment retires soon", extra={"deployment": label, "reason": reason})
        log.info("live model tiers", extra={"tiers": self.live.live})
        self.router = (build_router(self.live, config.router_settings, redis_url=settings.redis_url,
                                    redis_prefix=settings.redis_prefix)
                       if self.live.deployments else None)
        # list -> group -> the groups the Router falls back to; narrowed per request to the tenant's allowed tiers
        self._chains = {kind: {src: dsts for rule in fallback_chains(self.live, config.router_settings, kind)
                               for src, dsts in rule.items()} for kind in FALLBACK_KEYS}
        self.prices = Prices(config=config, live=self.live)
        self._max_output: dict[str, tuple[int, str] | None] = {}
        self._taken: dict[tuple[tuple[str, ...], str], bool] = {}

    def tiers(self) -> list[str]:
        return list(self.live.live)

    def resolve_tier(self, wanted: str, allowed: list[str]) -> str:
        """The wanted tier if live and allowed, else the best live allowed one."""
        order = [wanted, "smart", "fast", "local"]
        for tier in order:
            if tier in allowed and tier in self.live.live:
                return tier
        raise NoModelAvailable(
            f"no model is available for tiers {allowed}: live tiers are {sorted(self.live.live)}; "
            "set a provider key (e.g. ANTHROPIC_API_KEY) or install the local model (make bootstrap)"
        )

    def internal_tier(self, allowed: list[str] | None = None) -> str:
        """Internal tasks (titles, query rewriting) use `fast`, else the cheapest live tier."""
        allowed = allowed or ["local", "fast", "smart"]
        for tier in (INTERNAL_TIER, "local", "smart"):
            if tier in allowed and tier in self.live.live:
                return tier
        return self.resolve_tier(INTERNAL_TIER, allowed)

    def internal_model_tier(self, allowed: list[str], mode: str = "auto") -> str | None:
        """The tier an optional internal task (query rewrite, conversation title) would use, or None to skip
        the model. `auto`: only `fast` on a provider model (the in-process SmolLM2-135M writes neither usable
        queries nor titles); `model`: the internal tier, whatever it is; `off`: never."""
        if mode == "off":
            return None
        try:
            tier = self.internal_tier(allowed)
        except NoModelAvailable:  # the turn itself reports that
            return None
        if mode == "model":
            return tier
        provider = any(not m.startswith("local/") for m in self.live.live.get(tier, []))
        return tier if tier == INTERNAL_TIER and provider else None

    def group_for(self, tier: str, provider_preference: list[str] | None = None) -> str:
        """The Router group to call: the tier, or `tier@provider` for the first preferred live provider."""
        for provider in provider_preference or []:
            group = f"{tier}{PREFERENCE_SEP}{provider}"
            if group in self.live.groups:
                return group
        return tier

    def _require_router(self) -> Any:
        if self.router is None:
            raise NoModelAvailable("no model deployment is live: configure config/models.yaml")
        return self.router

    async def stream(
        self, *, tier: str, messages: list[dict], temperature: float | None = None,
        max_tokens: int | None = None, provider_preference: list[str] | None = None, stream: bool = True,
        params: dict[str, Any] | None = None, allowed_tiers: list[str] | None = None, fallbacks: bool = True,
        advisory: dict[str, Any] | None = None, tenant: str = "",
    ) -> AsyncIterator[Delta | Completion]:
        """`_stream` (below) in the model call's span (GenAI semantic conventions), its failures counted."""
        span = _model_span(tier, tenant)
        try:
            async for item in self._stream(
                tier=tier, messages=messages, temperature=temperature, max_tokens=max_tokens,
                provider_preference=provider_preference, stream=stream, params=params, allowed_tiers=allowed_tiers,
                fallbacks=fallbacks, advisory=advisory, tenant=tenant,
            ):
                if isinstance(item, Completion) and span is not None:
                    _answered(span, item)
                yield item
        except Exception as exc:
            self._call_failed(span, exc, tenant=tenant, tier=tier)
            raise
        finally:
            if span is not None:
                span.end()

    async def once(
        self, *, tier: str, messages: list[dict], temperature: float | None = None,
        max_tokens: int | None = None, provider_preference: list[str] | None = None,
        params: dict[str, Any] | None = None, allowed_tiers: list[str] | None = None, fallbacks: bool = True,
        advisory: dict[str, Any] | None = None, tenant: str = "",
    ) -> Completion:
        """`stream(stream=False)` as one coroutine: the same call, span, failure counting and Completion, without
        the async generators a caller that reads no tokens as they come would step through (bench/gateway)."""
        span = _model_span(tier, tenant)
        try:
            router, group, call = self._call(
                tier=tier, temperature=temperature, max_tokens=max_tokens, provider_preference=provider_preference,
                stream=False, params=params, allowed_tiers=allowed_tiers, fallbacks=fallbacks, advisory=advisory,
                tenant=tenant)
            response = await router.acompletion(model=group, messages=messages, **{**(params or {}), **call})
            model, usage, finish, text = _whole(response, tier)
            item = self._completion(response, tier=tier, group=group, text=text, model=model, usage=usage,
                                    finish=finish)
            if span is not None:
                _answered(span, item)
            return item
        except Exception as exc:
            self._call_failed(span, exc, tenant=tenant, tier=tier)
            raise
        finally:
            if span is not None:
                span.end()

    def _call_failed(self, span: Any, exc: Exception, *, tenant: str, tier: str) -> None:
        if not isinstance(exc, UnsupportedParameter):  # the caller's mistake, not the provider's
            self.metrics.model_error(tenant=tenant, tier=tier, error=type(exc).__name__)
        if span is not None:  # the class only: a provider's message can quote the request, or a key in a URL
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(StatusCode.ERROR, type(exc).__name__)

    def _call(
        self, *, tier: str, temperature: float | None, max_tokens: int | None,
        provider_preference: list[str] | None, stream: bool, params: dict[str, Any] | None,
        allowed_tiers: list[str] | None, fallbacks: bool, advisory: dict[str, Any] | None, tenant: str,
    ) -> tuple[Any, str, dict[str, Any]]:
        """(the Router, the group to call, the call's own arguments) — see `_stream` for what each one means."""
        router = self._require_router()
        group = self.group_for(tier, provider_preference)
        if (params or {}).get("reasoning_effort") is not None and not self._taken_by_all((group,), "reasoning_effort"):
            # Nothing to tell a model that does not think: LiteLLM would pass it on, or drop it, unnoticed.
            models = ", ".join(self.live.live.get(tier, []))
            raise UnsupportedParameter(f"reasoning_effort: the {tier} tier's models ({models}) do not think before "
                                       "answering; remove it", param="reasoning_effort")
        call: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        for kind, chains in self._chains.items():  # a request's own list replaces the Router's
            if not fallbacks:
                if kind == "fallbacks" or chains:
                    call[kind] = []
            elif allowed_tiers is not None:
                chain = chains.get(group, [])
                allowed = [g for g in chain if g.partition(PREFERENCE_SEP)[0] in allowed_tiers]
                if allowed != chain:
                    call[kind] = [{group: allowed}] if allowed else []
        if temperature is not None:
            call["temperature"] = temperature
        if max_tokens is not None:
            call["max_tokens"] = max_tokens
        if advisory:
            if temperature is None and not set(params or {}) - {"user"}:
                # Nothing of the caller's to refuse: LiteLLM leaves out, per deployment, what its model refuses.
                call.update(advisory)
                call["drop_params"] = True
            else:  # the caller's own parameters must still be refused by name, so no drop_params here
                reach = self._reachable(group, call)
                call.update({k: v for k, v in advisory.items() if self._taken_by_all(reach, k)})
        # Not reset afterwards: a stream's provider code runs later, as the caller iterates (in this same task).
        model_tenant.set(tenant)
        return router, group, call

    async def _stream(
        self, *, tier: str, messages: list[dict], temperature: float | None = None,
        max_tokens: int | None = None, provider_preference: list[str] | None = None, stream: bool = True,
        params: dict[str, Any] | None = None, allowed_tiers: list[str] | None = None, fallbacks: bool = True,
        advisory: dict[str, Any] | None = None, tenant: str = "",
    ) -> AsyncIterator[Delta | Completion]:
        """Deltas as the model produces them, then one Completion. `stream=False`: one non-streaming call
        (one Delta with the whole text) — much cheaper in LiteLLM when nobody reads tokens as they come.
        `allowed_tiers`: the Router's fallbacks only go to these (a tenant allowed `smart` alone is never
        answered by `local`); `fallbacks=False`: none at all (internal tasks have their own fallback).
        `temperature` and `params` are the caller's: a model that refuses one is the caller's 400 naming it.
        `advisory` holds preferences of a prompt or an internal task (its temperature): a model that does not
        take one answers without it (current Claude, GPT and Gemini models refuse any temperature).
        `tenant`: whose call this is, for the in-process model's fair turns between tenants (fair.py)."""
        router, group, call = self._call(
            tier=tier, temperature=temperature, max_tokens=max_tokens, provider_preference=provider_preference,
            stream=stream, params=params, allowed_tiers=allowed_tiers, fallbacks=fallbacks, advisory=advisory,
            tenant=tenant)
        response = await router.acompletion(model=group, messages=messages, **{**(params or {}), **call})
        parts: list[str] = []
        usage: Any = None
        model = tier
        finish = "stop"
        if not stream:
            model, usage, finish, text = _whole(response, tier)
            if text:
                parts.append(text)
                yield Delta(text)
        else:
            started = getattr(response, "_hidden_params", None) or {}
            streaming = self.live.by_id.get(str(started.get("model_id") or ""))
            streaming_model = streaming.model if streaming else None
            async for chunk in response:
                model = getattr(chunk, "model", None) or model
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                if chunk.choices:
                    finish = getattr(chunk.choices[0], "finish_reason", None) or finish
                    text = chunk.choices[0].delta.content or ""
                    if text:
                        parts.append(text)
                        yield Delta(text, streaming_model)
        yield self._completion(response, tier=tier, group=group, text="".join(parts), model=model, usage=usage,
                               finish=finish)

    def _completion(self, response: Any, *, tier: str, group: str, text: str, model: str, usage: Any,
                    finish: str) -> Completion:
        """The call's Completion: the deployment that answered (a fallback's tier), its tokens and cost."""
        hidden = getattr(response, "_hidden_params", None) or {}
        dep = self.live.by_id.get(str(hidden.get("model_id") or ""))
        attempted = int((hidden.get("additional_headers") or {}).get("x-litellm-attempted-fallbacks") or 0)
        answered_tier = dep.tier if dep else tier
        model = dep.model if dep else self._qualified(tier, model)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        fell_back = answered_tier != tier or attempted > 0
        if fell_back:
            log.warning("model fallback", extra={"requested": group, "answered_by": model, "tier": answered_tier})
        return Completion(text=text, model=model, tier=answered_tier, prompt_tokens=pt,
                          completion_tokens=ct, cost_usd=self.cost(model=model, prompt_tokens=pt,
                                                                   completion_tokens=ct, deployment=dep),
                          requested=group, fallback_from=group if fell_back else None,
                          deployment_id=dep.id if dep else None, finish_reason=str(finish))

    def tier_models(self) -> dict[str, dict[str, Any]]:
        """Per live tier: its models, whether all of them use a prompt's temperature, whether any thinks
        before answering (its thinking counts against max_tokens) — what the studio tells prompt editors."""
        return {tier: {"models": models, "temperature": all(takes(m, "temperature") for m in models),
                       "thinks": any(takes(m, "reasoning_effort") for m in models)}
                for tier, models in self.live.live.items()}

    def _reachable(self, group: str, call: dict[str, Any]) -> tuple[str, ...]:
        """The Router groups this call may be answered by: its group and its fallbacks."""
        reach = [group]
        for kind, chains in self._chains.items():
            rules = call[kind] if kind in call else [{group: chains.get(group, [])}]
            reach += [dst for rule in rules for dst in rule.get(group, []) if dst not in reach]
        return tuple(reach)

    def _taken_by_all(self, groups: tuple[str, ...], param: str) -> bool:
        key = (groups, param)
        if key not in self._taken:
            models = [d["litellm_params"]["model"] for d in self.live.deployments if d["model_name"] in groups]
            self._taken[key] = all(takes(m, param) for m in models)
        return self._taken[key]

    def _qualified(self, tier: str, model: str) -> str:
        """Providers echo bare model names; report the configured `provider/model`."""
        if "/" in model:
            return model
        for candidate in self.live.live.get(tier, []):
            if candidate.split("/", 1)[-1] == model:
                return candidate
        return model

    async def complete(
        self, *, tier: str, messages: list[dict], temperature: float | None = None,
        max_tokens: int | None = None, provider_preference: list[str] | None = None,
    ) -> Completion:
        final: Completion | None = None
        async for item in self.stream(tier=tier, messages=messages, temperature=temperature,
                                      max_tokens=max_tokens, provider_preference=provider_preference,
                                      stream=False):
            if isinstance(item, Completion):
                final = item
        assert final is not None
        return final

    def max_output_tokens(self, tier: str) -> tuple[int, str] | None:
        """(the smallest output limit among the tier's live models, that model) per LiteLLM's model table (the
        in-process model: its context window), or None when no model of the tier has a known limit (self-hosted)."""
        if tier not in self._max_output:
            import litellm

            limits: list[tuple[int, str]] = []
            for model in self.live.live.get(tier, []):
                if model.startswith("local/"):  # every local/* is the one in-process model (register())
                    limits.append((self.local.max_output_tokens, model))
                    continue
                try:
                    limit = litellm.get_model_info(model).get("max_output_tokens")
                except Exception:
                    limit = None
                if limit:
                    limits.append((int(limit), model))
            self._max_output[tier] = min(limits) if limits else None
        return self._max_output[tier]

    def estimate_cost(self, tier: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.prices.estimate(tier, prompt_tokens, completion_tokens)

    def cost(self, *, model: str, prompt_tokens: int, completion_tokens: int,
             deployment: Deployment | None = None) -> float:
        return self.prices.cost(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def _whole(response: Any, tier: str) -> tuple[str, Any, str, str]:
    """(model, usage, finish reason, text) of a non-streaming response."""
    model = getattr(response, "model", None) or tier
    usage = getattr(response, "usage", None)
    finish = (getattr(response.choices[0], "finish_reason", None) if response.choices else None) or "stop"
    text = (response.choices[0].message.content or "") if response.choices else ""
    return model, usage, finish, text


def _model_span(tier: str, tenant: str) -> Any:
    """The model call's span (GenAI semantic conventions), or None while tracing is off."""
    return start_span(f"chat {tier}", {"gen_ai.operation.name": "chat", "gen_ai.request.model": tier, TENANT: tenant})


def _answered(span: Any, item: Completion) -> None:
    span.set_attributes({"gen_ai.response.model": item.model, "gen_ai.provider.name": item.model.partition("/")[0],
                         "gen_ai.usage.input_tokens": item.prompt_tokens,
                         "gen_ai.usage.output_tokens": item.completion_tokens,
                         "gen_ai.response.finish_reasons": [item.finish_reason],
                         "atrium.tier": item.tier, "atrium.cost_usd": item.cost_usd})
    if item.fallback_from:
        span.set_attribute("atrium.fallback_from", item.fallback_from)
