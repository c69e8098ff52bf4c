"""LiteLLM's own per-call pricing and success logging are skipped while nobody reads them (we price every
call ourselves), and come back as soon as a LiteLLM callback is configured."""

from __future__ import annotations

import asyncio

import litellm
from litellm.integrations.custom_logger import CustomLogger


class _Seen(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.costs: list[float | None] = []

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: ANN001
        self.costs.append(kwargs.get("response_cost"))


MESSAGES = [{"role": "user", "content": "hello"}]


def test_no_litellm_pricing_without_a_callback_but_ours_still_prices(model_services, mock_models):
    svc = model_services(model_list=mock_models)
    response = asyncio.run(svc.llm.router.acompletion(model="smart", messages=MESSAGES))
    assert response._hidden_params.get("response_cost") is None  # LiteLLM did not price it
    done = asyncio.run(svc.llm.complete(tier="smart", messages=MESSAGES))
    assert done.model == "anthropic/claude-sonnet-5-5" and done.cost_usd > 0  # we did


def test_a_configured_litellm_callback_gets_priced_calls_again(model_services, mock_models):
    svc = model_services(model_list=mock_models)
    seen = _Seen()
    litellm.callbacks = [seen]
    try:
        async def call() -> object:
            response = await svc.llm.router.acompletion(model="smart", messages=MESSAGES)
            for _ in range(50):  # the success handler runs on LiteLLM's logging worker
                if seen.costs:
                    break
                await asyncio.sleep(0.05)
            return response

        response = asyncio.run(call())
        assert response._hidden_params.get("response_cost", 0) > 0
        assert seen.costs and seen.costs[0] and seen.costs[0] > 0
    finally:
        litellm.callbacks = []
