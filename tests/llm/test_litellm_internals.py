"""The LiteLLM internals Atrium leans on, each checked for the shape its code assumes, so that a LiteLLM upgrade
which moves one fails here, by name, rather than silently costing CPU on every call, billing wrong or losing
track of the deployment that answered.

backend/llm/litellm_quiet.py, backend/llm/pricing.py, backend/llm/service.py
- `litellm.suppress_debug_info`, `turn_off_message_logging`, `disable_streaming_logging` (`quiet_litellm`): flags
  LiteLLM defines and still reads (setting a name LiteLLM no longer reads does nothing and fails nothing).
- `litellm.callbacks`, `success_callback`, `_async_success_callback`, `service_callback` (`_litellm_observed`):
  where a configured callback lives; while one is, LiteLLM's own pricing and logging must run.
- `Logging.response_cost_calculator` (`_skip_unobserved_response_cost` replaces it): an instance method, the one
  that stamps `response_cost` on a Router answer.
- `logging_worker.GLOBAL_LOGGING_WORKER.ensure_initialized_and_enqueue(async_coroutine)`
  (`_skip_unobserved_success_logging` replaces it): takes the `Logging.async_success_handler` coroutine of each
  answer the Router gives.
- `response._hidden_params["model_id"]` and its `additional_headers["x-litellm-attempted-fallbacks"]`
  (`LLMService.stream`): the deployment that answered, and whether the Router fell back to it.
- per-size prices, `input_cost_per_token_above_<n>k_tokens` (`_TIERED`) or `tiered_pricing` (`_linear_rates`):
  never taken for a flat price.
backend/llm/local_provider.py (`register`, called by LLMService)
- `litellm.custom_provider_map` + `litellm.utils.custom_llm_setup()`: `local/...` answered by a CustomLLM.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
from pathlib import Path

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils import logging_worker
from litellm.litellm_core_utils.litellm_logging import Logging

from backend.llm.pricing import _TIERED
from tests.llm.fakes import FakeOpenAI, mock

MESSAGES = [{"role": "user", "content": "a secret question"}]
FLAGS = ("suppress_debug_info", "turn_off_message_logging", "disable_streaming_logging")
CALLBACK_LISTS = ("callbacks", "success_callback", "_async_success_callback", "service_callback")


class _Seen(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict] = []

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: ANN001
        self.events.append(kwargs)


def _litellm_defaults() -> dict[str, str]:
    """The module-level names LiteLLM's own __init__ assigns, with their source: what they are before Atrium
    assigns anything (an assignment to a name LiteLLM dropped would create it, so `hasattr` proves nothing)."""
    tree = ast.parse(Path(litellm.__file__).read_text(encoding="utf-8"))
    defaults = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.value is not None:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    defaults[target.id] = ast.unparse(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            defaults[node.target.id] = ast.unparse(node.value)
    return defaults


def test_the_flags_and_callback_lists_are_litellms_own():
    defaults = _litellm_defaults()
    assert {n: defaults.get(n) for n in FLAGS} == {n: "False" for n in FLAGS}
    for name in CALLBACK_LISTS:
        assert name in defaults and isinstance(getattr(litellm, name), list), name


def test_litellm_still_reads_the_flags_atrium_sets():
    package = Path(litellm.__file__).parent
    unread = set(FLAGS)
    for path in package.rglob("*.py"):
        if path == Path(litellm.__file__):
            continue  # where they are defined, not read
        text = path.read_text(encoding="utf-8", errors="replace")
        unread -= {name for name in unread if f"litellm.{name}" in text}
        if not unread:
            break
    assert not unread, f"no LiteLLM module reads {sorted(unread)} any more"


def test_the_patched_internals_have_the_shape_the_patches_assume(model_services, mock_models):
    original = inspect.getattr_static(Logging, "response_cost_calculator")
    assert inspect.isfunction(original), "an instance method (not a static/class method or a property)"
    worker = logging_worker.GLOBAL_LOGGING_WORKER
    enqueue = inspect.getattr_static(type(worker), "ensure_initialized_and_enqueue")
    assert inspect.isfunction(enqueue)
    # LiteLLM passes the coroutine by this keyword in places: the filter's parameter must carry its name.
    assert list(inspect.signature(enqueue).parameters)[:2] == ["self", "async_coroutine"]
    assert inspect.iscoroutinefunction(Logging.async_success_handler)
    assert Logging.async_success_handler.__code__.co_name == "async_success_handler"

    model_services(model_list=mock_models)  # builds LLMService: the filters are installed
    assert getattr(Logging.response_cost_calculator, "_atrium_filtered", False)
    assert getattr(worker, "_atrium_filtered", False)
    assert worker.ensure_initialized_and_enqueue is not enqueue


def test_the_router_hands_its_success_handler_to_the_worker_and_unobserved_it_never_runs(
        model_services, mock_models, monkeypatch):
    svc = model_services(model_list=mock_models)
    worker = logging_worker.GLOBAL_LOGGING_WORKER
    filtered = worker.ensure_initialized_and_enqueue  # Atrium's filter in front of LiteLLM's method
    handed: list[tuple[str, str]] = []

    def spy(async_coroutine, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        result = filtered(async_coroutine, *args, **kwargs)
        handed.append((async_coroutine.cr_code.co_name, inspect.getcoroutinestate(async_coroutine)))
        return result

    monkeypatch.setattr(worker, "ensure_initialized_and_enqueue", spy)
    response = asyncio.run(svc.llm.router.acompletion(model="smart", messages=MESSAGES))
    assert response.choices[0].message.content == "smart says hi"
    assert ("async_success_handler", inspect.CORO_CLOSED) in handed, handed  # dropped before it ran
    assert response._hidden_params.get("response_cost") is None  # LiteLLM did not price it


@pytest.mark.parametrize("where", ["callbacks", "success_callback"])
def test_a_configured_callback_gets_litellms_logging_and_pricing_back(model_services, mock_models, where):
    """With a callback, both filters step aside: it gets its success event, priced, and without the prompt
    (turn_off_message_logging: no LiteLLM callback sees what users typed)."""
    svc = model_services(model_list=mock_models)
    seen = _Seen()

    async def call():  # noqa: ANN202
        response = await svc.llm.router.acompletion(model="smart", messages=MESSAGES)
        for _ in range(100):  # the success handler runs on LiteLLM's logging worker
            if seen.events:
                break
            await asyncio.sleep(0.05)
        return response

    setattr(litellm, where, [seen])
    try:
        response = asyncio.run(call())
    finally:
        setattr(litellm, where, [])
        litellm._async_success_callback.clear()  # LiteLLM copies a CustomLogger here
    assert response._hidden_params.get("response_cost", 0) > 0
    assert seen.events, f"a callback in litellm.{where} got no success event"
    assert seen.events[0].get("response_cost", 0) > 0
    logged = seen.events[0].get("standard_logging_object")
    assert logged and logged.get("messages"), "the event carries its (redacted) messages"
    assert "a secret question" not in json.dumps(logged, default=str)


def test_the_answering_deployment_and_a_fallback_are_in_the_hidden_params(model_services):
    with FakeOpenAI(fail=True) as server:
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                               "api_base": server.url}},
                  mock("fast", "anthropic/claude-haiku-5-5", "the fallback answered")]
        svc = model_services(model_list=models)
        fast = next(d for d in svc.llm.live.by_id.values() if d.tier == "fast")

        async def calls():  # noqa: ANN202
            direct = await svc.llm.router.acompletion(model="fast", messages=MESSAGES)
            fell_back = await svc.llm.router.acompletion(model="smart", messages=MESSAGES)
            stream = await svc.llm.router.acompletion(model="fast", messages=MESSAGES, stream=True)
            started = dict(stream._hidden_params)  # before the first chunk, as LLMService.stream reads it
            _ = [chunk async for chunk in stream]
            return direct, fell_back, started

        direct, fell_back, started = asyncio.run(calls())
        done = asyncio.run(svc.llm.complete(tier="smart", messages=MESSAGES))
    assert direct._hidden_params["model_id"] == fell_back._hidden_params["model_id"] == started["model_id"] == fast.id
    attempted = [int((r._hidden_params.get("additional_headers") or {}).get("x-litellm-attempted-fallbacks") or 0)
                 for r in (direct, fell_back)]
    assert attempted[0] == 0 and attempted[1] > 0, attempted
    # What LLMService makes of them: the deployment that answered, and the group it fell back from.
    assert (done.deployment_id, done.tier, done.fallback_from) == (fast.id, "fast", "smart")


def test_prices_that_depend_on_the_prompt_size_come_in_the_forms_atrium_recognises():
    """A per-size price is `input/output_cost_per_token_above_<n>k_tokens` (`_TIERED`; variants for other service
    tiers carry a suffix next to the plain key) or a `tiered_pricing` list: any other form would be read as flat."""
    sized = re.compile(r"^(input|output)_cost_per_token_above_")
    odd = {m: keys for m, info in litellm.model_cost.items()
           if (keys := [k for k in info if sized.match(k)]) and not any(_TIERED.search(k) for k in keys)}
    assert not odd, f"per-size prices in a form _TIERED does not know: {list(odd.items())[:3]}"
    assert any(_TIERED.search(k) for info in litellm.model_cost.values() for k in info)
    assert any(info.get("tiered_pricing") for info in litellm.model_cost.values())


@pytest.mark.parametrize("model", [
    "anthropic/claude-sonnet-4-5",  # flat: priced from the table once
    "gemini/gemini-2.5-pro",  # input_cost_per_token_above_200k_tokens
    "dashscope/qwen-flash",  # tiered_pricing ranges (flat price 0)
])
def test_atrium_prices_each_form_as_litellm_does(model_services, mock_models, model):
    svc = model_services(model_list=mock_models)
    for prompt_tokens, completion_tokens in ((1_000, 200), (300_000, 2_000)):
        theirs = sum(litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                            completion_tokens=completion_tokens))
        assert theirs > 0, (model, prompt_tokens)
        ours = svc.llm.cost(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        assert ours == pytest.approx(theirs), (model, prompt_tokens)


def test_the_local_provider_is_registered_through_litellms_custom_provider_map():
    from litellm import CustomLLM
    from litellm.types.utils import ModelResponse

    from backend.llm.local_provider import register

    class Echo(CustomLLM):
        async def acompletion(self, *args, **kwargs) -> ModelResponse:  # noqa: ANN002, ANN003
            return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": "echo"}}])

    before = list(litellm.custom_provider_map or [])
    register(Echo())  # type: ignore[arg-type]
    try:
        assert [p["provider"] for p in litellm.custom_provider_map].count("local") == 1
        assert "local" in litellm.provider_list
        response = asyncio.run(litellm.acompletion(model="local/anything", messages=MESSAGES))
        assert response.choices[0].message.content == "echo"
    finally:
        litellm.custom_provider_map = before
