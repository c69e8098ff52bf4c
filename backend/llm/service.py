"""LLMService: the one way backend code calls a model (streaming or not), with usage and cost."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from backend.llm.local_provider import LocalLlama, register
from backend.llm.router import LiveModels, ModelsConfig, build_router, live_deployments
from backend.settings import Settings

log = logging.getLogger("atrium.llm")


class NoModelAvailable(RuntimeError):
    pass


@dataclass
class Completion:
    text: str
    model: str
    tier: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass
class Delta:
    text: str


class LLMService:
    def __init__(self, *, settings: Settings, config: ModelsConfig, local: LocalLlama | None = None) -> None:
        self.settings = settings
        self.config = config
        self.local = local or LocalLlama(n_threads=settings.llm_threads, n_ctx=settings.llm_context,
                                         model_path=settings.local_model_path)
        register(self.local)
        self.live: LiveModels = live_deployments(config, settings, local_available=self.local.available())
        for label, reason in self.live.excluded.items():
            log.info("model deployment left out", extra={"deployment": label, "reason": reason})
        log.info("live model tiers", extra={"tiers": self.live.live})
        self.router = build_router(self.live, config.router_settings) if self.live.deployments else None

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

    def _require_router(self) -> Any:
        if self.router is None:
            raise NoModelAvailable("no model deployment is live: configure config/models.yaml")
        return self.router

    async def stream(
        self, *, tier: str, messages: list[dict], temperature: float | None = None,
        max_tokens: int | None = None, metadata: dict | None = None,
    ) -> AsyncIterator[Delta | Completion]:
        router = self._require_router()
        params: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
        if temperature is not None:
            params["temperature"] = temperature
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        response = await router.acompletion(model=tier, messages=messages, **params)
        parts: list[str] = []
        usage: Any = None
        model = tier
        async for chunk in response:
            model = getattr(chunk, "model", None) or model
            if getattr(chunk, "usage", None):
                usage = chunk.usage
            if chunk.choices:
                text = chunk.choices[0].delta.content or ""
                if text:
                    parts.append(text)
                    yield Delta(text)
        text = "".join(parts)
        model = self._qualified(tier, model)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        yield Completion(text=text, model=model, tier=tier, prompt_tokens=pt, completion_tokens=ct,
                         cost_usd=self.cost(model=model, prompt_tokens=pt, completion_tokens=ct))

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
        max_tokens: int | None = None,
    ) -> Completion:
        final: Completion | None = None
        async for item in self.stream(tier=tier, messages=messages, temperature=temperature,
                                      max_tokens=max_tokens):
            if isinstance(item, Completion):
                final = item
        assert final is not None
        return final

    def cost(self, *, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        if model.startswith("local/") or model == "smollm2":
            return 0.0
        try:
            import litellm

            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            return float(prompt_cost + completion_cost)
        except Exception:  # unknown model: priced in models.yaml by the governance layer
            return 0.0
