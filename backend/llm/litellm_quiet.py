"""LiteLLM's process-wide settings for Atrium: its per-call logging and pricing switched off while no LiteLLM callback
reads them (we price and record every call ourselves), and the callbacks an operator configures switched on.
tests/llm/test_litellm_internals.py pins the LiteLLM internals these rely on."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("atrium.llm")


def quiet_litellm() -> None:
    """We price and record every call ourselves; LiteLLM's per-call logging/cost callbacks are pure
    overhead on the hot path (see bench/gateway)."""
    import litellm

    litellm.suppress_debug_info = True
    litellm.turn_off_message_logging = True
    litellm.disable_streaming_logging = True  # type: ignore[attr-defined]
    _skip_unobserved_success_logging()
    _skip_unobserved_response_cost()


def _litellm_observed() -> bool:
    """True when a LiteLLM callback is configured (then its logging and pricing must run)."""
    import litellm

    return bool(litellm.callbacks or litellm.success_callback or litellm._async_success_callback
                or litellm.service_callback)


def _skip_unobserved_response_cost() -> None:
    """LiteLLM prices every response while stamping its hidden params (`response_cost`), about a sixth of
    `Router.acompletion`'s CPU with a mock model (bench/gateway). We price calls ourselves (`LLMService.cost`:
    models.yaml, then LiteLLM's table once per model) and nothing reads that stamp unless a LiteLLM callback
    is configured, so it is skipped until one is. No-op if LiteLLM renames the method."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    original = getattr(Logging, "response_cost_calculator", None)
    if original is None or getattr(original, "_atrium_filtered", False):
        return

    def response_cost_calculator(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _litellm_observed():
            return None
        return original(self, *args, **kwargs)

    response_cost_calculator._atrium_filtered = True  # type: ignore[attr-defined]
    Logging.response_cost_calculator = response_cost_calculator  # type: ignore[method-assign]


def _skip_unobserved_success_logging() -> None:
    """LiteLLM builds a standard logging payload and prices every successful call in its logging worker,
    even when no callback will read it. With no success callback configured that is wasted CPU on the
    hot path (see bench/gateway), so the coroutine is dropped; configure a LiteLLM callback (e.g.
    litellm.success_callback = ["langfuse"]) and it runs again. Failure logging is never touched."""
    from litellm.litellm_core_utils import logging_worker

    worker = logging_worker.GLOBAL_LOGGING_WORKER
    if getattr(worker, "_atrium_filtered", False):
        return
    original = worker.ensure_initialized_and_enqueue

    def enqueue(async_coroutine: Any, *args: Any, **kwargs: Any) -> Any:
        code = getattr(async_coroutine, "cr_code", None)
        if code is not None and code.co_name == "async_success_handler" and not _litellm_observed():
            async_coroutine.close()
            return None
        return original(async_coroutine, *args, **kwargs)

    worker.ensure_initialized_and_enqueue = enqueue
    worker._atrium_filtered = True


def use_callbacks(names: list[str]) -> None:
    """LiteLLM's own logging callbacks (ATRIUM_LITELLM_CALLBACKS), e.g. langfuse: on success and on failure."""
    if not names:
        return
    import litellm

    for hooks in (litellm.success_callback, litellm.failure_callback):
        hooks.extend(n for n in names if n not in hooks)
    log.info("LiteLLM callbacks on", extra={"callbacks": names})
