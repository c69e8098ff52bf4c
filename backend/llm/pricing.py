"""What a model call costs: models.yaml's prices first (local models free), then LiteLLM's price table, looked up
once per model where the price is flat; and the upper estimate a quota reservation holds per tier."""

from __future__ import annotations

import logging
import re

from backend.llm.router import LiveModels, ModelsConfig

log = logging.getLogger("atrium.llm")

_TIERED = re.compile(r"^(input|output)_cost_per_token_above_\d+k_tokens$")  # price tiers by context size


class Prices:
    def __init__(self, *, config: ModelsConfig, live: LiveModels) -> None:
        self.config = config
        self.live = live
        self._prices = self._price_table()
        self._unpriced: set[str] = set()
        self._tier_rates: dict[str, tuple[float, float]] = {}
        self._rates: dict[str, tuple[float, float] | None] = {}

    def estimate(self, tier: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Upper estimate for quota reservations (settled with the real cost afterwards): the tier's most
        expensive live model, per-token prices looked up once per tier."""
        rates = self._tier_rates.get(tier)
        if rates is None:
            per_m = [(self.cost(model=m, prompt_tokens=1_000_000, completion_tokens=0),
                      self.cost(model=m, prompt_tokens=0, completion_tokens=1_000_000))
                     for m in self.live.live.get(tier, [])]
            rates = self._tier_rates[tier] = (max((p for p, _ in per_m), default=0.0) / 1e6,
                                              max((c for _, c in per_m), default=0.0) / 1e6)
        return prompt_tokens * rates[0] + completion_tokens * rates[1]

    # -- cost -------------------------------------------------------------------------------------------

    def _price_table(self) -> dict[str, tuple[float, float]]:
        """Configured prices: `prices:` in models.yaml plus per-deployment model_info costs."""
        table = dict(self.config.prices)
        for dep in self.config.model_list:
            info = dep.get("model_info") or {}
            if "input_cost_per_token" in info or "output_cost_per_token" in info:
                table[dep["litellm_params"]["model"]] = (float(info.get("input_cost_per_token", 0.0)),
                                                         float(info.get("output_cost_per_token", 0.0)))
        return table

    def _linear_rates(self, model: str) -> tuple[float, float] | None:
        """Per-token prices from LiteLLM's table, looked up once per model, when the model's price is
        flat (no tiers such as `input_cost_per_token_above_200k_tokens`, no `tiered_pricing` ranges: such a
        model's flat price is 0); else None (ask LiteLLM each time). tests/llm/test_litellm_internals.py"""
        if model in self._rates:
            return self._rates[model]
        import litellm

        try:
            info = litellm.get_model_info(model)
        except Exception:
            info = None
        rates = None
        if info and not info.get("tiered_pricing") and not any(_TIERED.search(k) and v for k, v in info.items()):
            rates = (float(info.get("input_cost_per_token") or 0.0), float(info.get("output_cost_per_token") or 0.0))
        self._rates[model] = rates
        return rates

    def cost(self, *, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call: models.yaml's price when configured (local = 0), else LiteLLM's price table."""
        if model in self._prices:
            inp, out = self._prices[model]
            return prompt_tokens * inp + completion_tokens * out
        if model.startswith("local/"):
            return 0.0
        rates = self._linear_rates(model)
        if rates is not None:
            return prompt_tokens * rates[0] + completion_tokens * rates[1]
        import litellm

        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            return float(prompt_cost + completion_cost)
        except Exception:
            if model not in self._unpriced:
                self._unpriced.add(model)
                log.warning("no price for model: add it under `prices:` in config/models.yaml",
                            extra={"model": model})
            return 0.0
