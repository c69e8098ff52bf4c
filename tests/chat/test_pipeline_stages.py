"""The chat pipeline's stages (backend/chat/pipeline.py): an internal task takes its own path and never enters a
chat turn's `stream`; a turn whose caller goes away is recorded with what it read and wrote and its quota
reservation settled with that; a failed model call releases its reservation; closing the stream after the result
changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import select

from backend.chat.types import ChatRequest, TurnResult
from backend.db.models import ChatTurn
from backend.errors import UpstreamError
from tests.chat.test_rewrite import FOLLOW_UP, HISTORY, REWRITTEN, SMART, internal_rows, services
from tests.llm.fakes import FakeOpenAI, mock
from tests.llm.test_models import alice, run


def rows(svc) -> list[ChatTurn]:
    with svc.db.session() as s:
        return list(s.exec(select(ChatTurn).order_by(ChatTurn.id)))


class QuotaCalls:
    """The service's QuotaService, with its settle and release calls kept."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.settled: list[int] = []
        self.released = 0

    async def settle(self, admission: Any, *, tokens: int, cost_usd: float) -> None:
        self.settled.append(tokens)
        await self.inner.settle(admission, tokens=tokens, cost_usd=cost_usd)

    async def release(self, admission: Any) -> None:
        self.released += 1
        await self.inner.release(admission)

    def __getattr__(self, name: str) -> Any:  # admit
        return getattr(self.inner, name)


def openai_smart(server: FakeOpenAI) -> list[dict]:
    return [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                         "api_base": server.url}}]


def test_an_internal_task_never_enters_the_chat_turns_stream(model_services):
    svc, retriever = services(model_services, [mock("fast", "anthropic/claude-haiku-5-5", REWRITTEN), SMART],
                              seed=False)
    entered: list[str] = []
    stream = svc.chat.stream

    def counting(principal: Any, req: ChatRequest) -> Any:
        entered.append(req.channel)
        return stream(principal, req)

    svc.chat.stream = counting  # run() and every other caller go through the instance's stream
    result = run(svc, FOLLOW_UP, tier="smart", history=HISTORY)
    assert entered == ["ui"] and result.answer == "smart says hi"  # the rewrite did not pass through stream
    assert retriever.queries[0] == REWRITTEN
    [rewrite] = internal_rows(svc)
    assert (rewrite.prompt_name, rewrite.tier, rewrite.route_reason, rewrite.outcome) == (
        "query_rewrite", "fast", "internal task query_rewrite: fast", "ok")

    title = asyncio.run(svc.chat.internal(alice(svc), "sales", task="title", assistant="sales-assistant",
                                          messages=[{"role": "user", "content": "Question: trials?"}]))
    assert entered == ["ui"] and (title.answer, title.tier) == (REWRITTEN, "fast")
    assert [(r.prompt_name, r.assistant) for r in internal_rows(svc)] == [("query_rewrite", "sales-assistant"),
                                                                          ("title", "sales-assistant")]


def test_a_stream_closed_mid_answer_is_counted_and_its_reservation_settled(model_services):
    with FakeOpenAI(text="one two three four five six seven eight") as server:
        svc = model_services(model_list=openai_smart(server),
                             policy={"default_tier": "smart", "allowed_tiers": ["smart"]})
        quotas = svc.chat.quotas = QuotaCalls(svc.chat.quotas)
        req = ChatRequest(tenant="sales", assistant="sales-assistant", message="hello there", tier="smart")

        async def read_two() -> list[str]:
            stream = svc.chat.stream(alice(svc), req)
            read: list[str] = []
            async for item in stream:
                assert isinstance(item, str)
                read.append(item)
                if len(read) == 2:
                    break
            await stream.aclose()
            return read

        read = asyncio.run(read_two())
    [row] = rows(svc)
    assert (row.outcome, row.error, row.tier) == ("cancelled", "the caller went away (GeneratorExit)", "smart")
    assert row.prompt_tokens > 0 and row.completion_tokens == len("".join(read)) // 4 and row.cost_usd > 0
    assert quotas.settled == [row.prompt_tokens + row.completion_tokens] and quotas.released == 0


def test_a_failed_model_call_releases_its_reservation(model_services):
    with FakeOpenAI(fail=True) as server:
        svc = model_services(model_list=openai_smart(server), fallbacks=[])
        quotas = svc.chat.quotas = QuotaCalls(svc.chat.quotas)
        with pytest.raises(UpstreamError):
            run(svc, "hello", tier="smart")
    [row] = rows(svc)
    assert row.outcome == "error" and (quotas.released, quotas.settled) == (1, [])


def test_closing_the_stream_after_its_result_changes_nothing(model_services, mock_models):
    svc = model_services(model_list=mock_models)
    quotas = svc.chat.quotas = QuotaCalls(svc.chat.quotas)

    async def read_result() -> TurnResult:
        stream = svc.chat.stream(alice(svc), ChatRequest(tenant="sales", assistant="sales-assistant",
                                                         message="hello", tier="smart"))
        async for item in stream:
            if isinstance(item, TurnResult):
                break
        await stream.aclose()
        assert isinstance(item, TurnResult)
        return item

    result = asyncio.run(read_result())
    [row] = rows(svc)
    assert (row.id, row.outcome, row.error) == (result.turn_id, "ok", None)
    assert quotas.settled == [result.prompt_tokens + result.completion_tokens] and quotas.released == 0
