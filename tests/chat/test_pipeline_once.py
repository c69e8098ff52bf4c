"""A non-streaming plain completion (the OpenAI-compatible route's, `ChatService.run` with `messages`) takes
`ChatService._once`, one coroutine, not `stream`'s async generators (bench/gateway). Both ways must leave the same
turn: the same result and usage row, the same quota settlement, the same refusals with the same rows and audit, and
a caller that goes away mid-call gets its reservation and its in-flight slot back either way."""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import replace
from typing import Any

import pytest
from sqlmodel import select

from backend.chat.types import ChatRequest, TurnResult
from backend.db.models import AuditEvent, ChatTurn
from backend.errors import UpstreamError
from tests.chat.test_pipeline_stages import QuotaCalls, openai_smart, rows
from tests.llm.fakes import FakeOpenAI
from tests.llm.test_models import alice

# What differs between two turns made one after the other, whichever way they took.
_PER_TURN = {"id", "created_at", "updated_at", "latency_ms", "turn_key", "owner"}


def plain(text: str = "hi there", **kw: Any) -> ChatRequest:
    """As the OpenAI-compatible route builds it (`stream` left at its default: run() makes the call non-streaming)."""
    return ChatRequest(tenant="sales", assistant="", message="", channel="openai", tier="smart",
                       messages=[{"role": "user", "content": text}], **kw)


async def via_stream(svc: Any, req: ChatRequest) -> TurnResult:
    """The way run() went before `_once`: `stream` with the non-streaming request, read to its result."""
    result = None
    async for item in svc.chat.stream(alice(svc), replace(req, stream=False)):
        if isinstance(item, TurnResult):
            result = item
    assert result is not None
    return result


def both(svc: Any, req: ChatRequest) -> tuple[Any, Any]:
    """(what run() gave or raised, what `stream` gave or raised) for the same request, one after the other."""
    out = []
    for call in (lambda: svc.chat.run(alice(svc), req), lambda: via_stream(svc, req)):
        try:
            out.append(asyncio.run(call()))
        except Exception as exc:  # noqa: BLE001 - compared below
            out.append(exc)
    return out[0], out[1]


def fields(row: ChatTurn) -> dict:
    return {k: v for k, v in row.model_dump().items() if k not in _PER_TURN}


def audit(svc: Any) -> list[tuple]:
    with svc.db.session() as s:
        return [(e.kind, e.route, e.status, e.reason, e.count)
                for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]


def test_run_takes_the_direct_path_and_leaves_the_same_turn_as_the_stream(model_services, mock_models):
    svc = model_services(model_list=mock_models, quotas={"requests_per_minute": 100, "user_requests_per_minute": 100,
                                                         "tokens_per_day": 100_000, "monthly_budget_usd": 100.0})
    quotas = svc.chat.quotas = QuotaCalls(svc.chat.quotas)
    entered: list[str] = []
    stream = svc.chat.stream
    svc.chat.stream = lambda principal, req: entered.append(req.channel) or stream(principal, req)
    once = asyncio.run(svc.chat.run(alice(svc), plain(max_tokens=50)))
    assert entered == []  # run() did not go through stream
    streamed = asyncio.run(via_stream(svc, plain(max_tokens=50)))
    assert entered == ["openai"]
    assert (once.answer, once.tier, once.finish_reason) == ("smart says hi", "smart", "stop")
    skip = {"turn_id", "latency_ms"}
    assert {k: v for k, v in vars(once).items() if k not in skip} == \
        {k: v for k, v in vars(streamed).items() if k not in skip}
    first, second = rows(svc)
    assert first.id == once.turn_id and second.id == streamed.turn_id
    assert fields(first) == fields(second) and first.turn_key and second.turn_key
    assert (first.status, first.outcome, first.channel) == ("completed", "ok", "openai")
    assert quotas.settled == [once.prompt_tokens + once.completion_tokens] * 2 and quotas.released == 0
    assert svc.chat.quotas.live_holds() == 0 and svc.chat.inflight.held("sales")["model_calls"] == 0


@pytest.mark.parametrize("limit", ["user_requests_per_minute", "tokens_per_day", "max_tokens_too_large"])
def test_refusals_are_the_same_both_ways(model_services, mock_models, limit):
    quotas = {"user_requests_per_minute": 1} if limit == "user_requests_per_minute" else \
        {"tokens_per_day": 10} if limit == "tokens_per_day" else None
    svc = model_services(model_list=mock_models, quotas=quotas)
    req = plain(max_tokens=10_000_000) if limit == "max_tokens_too_large" else plain()
    if limit == "user_requests_per_minute":  # the one request of the minute; both ways are then refused
        asyncio.run(svc.chat.run(alice(svc), req))
    before = len(rows(svc))
    once, streamed = both(svc, req)
    assert type(once) is type(streamed) and isinstance(once, Exception)
    # The seconds to wait in a rate window's refusal are counted down between the two.
    assert (re.sub(r"\d+", "N", once.message), once.code, getattr(once, "limit", None)) == \
        (re.sub(r"\d+", "N", streamed.message), streamed.code, getattr(streamed, "limit", None))
    assert limit in (getattr(once, "limit", None), once.code)
    new = rows(svc)[before:]
    assert len(new) == 2 and fields(new[0]) == fields(new[1])
    assert new[0].outcome == ("refused" if limit == "max_tokens_too_large" else "quota")
    assert svc.chat.quotas is None or svc.chat.quotas.live_holds() == 0
    assert svc.chat.inflight.held("sales")["model_calls"] == 0


def test_a_refused_member_is_audited_the_same_both_ways(model_services, mock_models):
    svc = model_services(model_list=mock_models)
    stranger = svc.principal_from_claims({"sub": "mallory", "preferred_username": "mallory", "groups": ["finance"]})
    out = []
    for call in (lambda: svc.chat.run(stranger, plain()),
                 lambda: svc.chat.stream(stranger, replace(plain(), stream=False)).__anext__()):
        with pytest.raises(Exception) as info:
            asyncio.run(call())
        out.append(info.value)
    assert type(out[0]) is type(out[1]) and out[0].message == out[1].message
    # The same denial twice within the audit's window is one grouped row (governance/audit.py) counting both.
    [(kind, route, status, _, count)] = audit(svc)
    assert (kind, route, status, count) == ("denied", "chat:openai", 403, 2)
    assert rows(svc) == []  # refused at admission: no usage row, either way


def test_a_failed_model_call_is_the_same_both_ways(model_services):
    with FakeOpenAI(fail=True) as server:
        svc = model_services(model_list=openai_smart(server), fallbacks=[], quotas={"tokens_per_day": 100_000})
        quotas = svc.chat.quotas = QuotaCalls(svc.chat.quotas)
        once, streamed = both(svc, plain())
    assert isinstance(once, UpstreamError) and type(streamed) is UpstreamError and once.message == streamed.message
    first, second = rows(svc)
    assert fields(first) == fields(second) and (first.outcome, first.status) == ("error", "interrupted")
    assert (quotas.released, quotas.settled) == (2, []) and quotas.live_holds() == 0


def test_a_cancelled_non_streaming_call_gives_back_its_reservation_and_slot(model_services):
    gate = threading.Event()
    with FakeOpenAI(gate=gate, text="never read") as server:
        svc = model_services(model_list=openai_smart(server), quotas={"tokens_per_day": 100_000},
                             policy={"default_tier": "smart", "allowed_tiers": ["smart"]})
        quotas = svc.chat.quotas = QuotaCalls(svc.chat.quotas)

        async def cancelled() -> tuple[dict, int]:
            task = asyncio.create_task(svc.chat.run(alice(svc), plain()))
            while not server.requests:  # the model call is in progress (the server holds it at the gate)
                await asyncio.sleep(0.01)
            held = svc.chat.inflight.held("sales"), quotas.live_holds()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return held

        try:
            held = asyncio.run(cancelled())
        finally:
            gate.set()
    assert held == ({"model_calls": 1, "streams": 0}, 1)  # what the call held while the model was answering
    [row] = rows(svc)
    assert (row.outcome, row.status, row.error) == ("cancelled", "interrupted",
                                                    "the caller went away (CancelledError)")
    assert row.prompt_tokens > 0 and row.completion_tokens == 0  # what the model read is counted, as billed
    assert quotas.settled == [row.prompt_tokens] and quotas.released == 0
    assert quotas.live_holds() == 0 and svc.chat.inflight.held("sales") == {"model_calls": 0, "streams": 0}
