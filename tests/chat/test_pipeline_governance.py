"""The chat pipeline's model governance: budget warning at 80%, refusal at 100% recorded as a quota turn,
internal tasks on `fast`, plain completions, provider failure as a clear error."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from backend.chat.types import ChatRequest
from backend.db.models import ChatTurn
from backend.errors import QuotaExceeded, UpstreamError
from tests.llm.fakes import FakeOpenAI
from tests.llm.test_models import alice, run


def test_budget_warning_then_429_and_the_refusal_is_recorded(model_services, mock_models):
    svc = model_services(model_list=mock_models, quotas={"monthly_budget_usd": 1.0, "requests_per_minute": None,
                                                         "user_requests_per_minute": None, "tokens_per_day": None})
    with svc.db.session() as s:
        s.add(ChatTurn(tenant="sales", subject="bob", cost_usd=0.85))
        s.commit()
    result = run(svc, "hello", tier="smart")
    assert result.warnings == ["Sales has used 85% of its monthly budget of $1.00."]
    with svc.db.session() as s:
        s.add(ChatTurn(tenant="sales", subject="bob", cost_usd=0.2))
        s.commit()
    # Another replica (same SQL database, its own in-process counters) seeds from SQL and refuses.
    svc2 = model_services(model_list=mock_models, quotas={"monthly_budget_usd": 1.0})
    with pytest.raises(QuotaExceeded) as info:
        run(svc2, "hello again", tier="smart")
    assert info.value.limit == "monthly_budget_usd" and int(info.value.headers["Retry-After"]) > 0
    with svc.db.session() as s:
        last = s.exec(select(ChatTurn).order_by(ChatTurn.id.desc())).first()
    assert (last.outcome, last.cost_usd, last.model) == ("quota", 0.0, None)
    assert "monthly budget" in last.error


def test_user_rate_limit_in_the_pipeline(model_services, mock_models):
    svc = model_services(model_list=mock_models, quotas={"user_requests_per_minute": 2})
    run(svc, "one", tier="fast")
    run(svc, "two", tier="fast")
    with pytest.raises(QuotaExceeded) as info:
        run(svc, "three", tier="fast")
    assert info.value.limit == "user_requests_per_minute"
    assert "try again in" in info.value.message


def test_internal_tasks_use_fast_and_are_recorded(model_services, mock_models):
    svc = model_services(model_list=mock_models, policy={"routing": "auto"})
    result = asyncio.run(svc.chat.internal(alice(svc), "sales", task="title",
                                           messages=[{"role": "user", "content": "Compare all of our pricing "
                                                      "plans in depth and explain every trade-off"}]))
    assert result.tier == "fast" and result.answer == "fast says hi"
    with svc.db.session() as s:
        row = s.exec(select(ChatTurn).where(ChatTurn.id == result.turn_id)).one()
    assert (row.channel, row.prompt_name, row.route_reason) == ("internal", "title", "internal task title: fast")
    assert row.assistant is None

    # Made for an assistant (a follow-up's query rewrite): recorded under it, so usage by assistant counts it.
    result = asyncio.run(svc.chat.internal(alice(svc), "sales", task="query_rewrite", assistant="sales-assistant",
                                           messages=[{"role": "user", "content": "rewrite"}]))
    with svc.db.session() as s:
        row = s.exec(select(ChatTurn).where(ChatTurn.id == result.turn_id)).one()
    assert (row.channel, row.prompt_name, row.assistant) == ("internal", "query_rewrite", "sales-assistant")


def test_plain_completion_skips_prompt_and_cache(model_services, mock_models):
    svc = model_services(model_list=mock_models)
    req = ChatRequest(tenant="sales", assistant="", message="", tier="smart",
                      messages=[{"role": "user", "content": "hi"}])
    first = asyncio.run(svc.chat.run(alice(svc), req))
    again = asyncio.run(svc.chat.run(alice(svc), req))
    assert first.answer == "smart says hi" and not again.cached and first.prompt_version is None


def test_every_provider_failing_is_a_clear_502(model_services):
    with FakeOpenAI(fail=True) as server:
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                               "api_base": server.url}}]
        svc = model_services(model_list=models, fallbacks=[])
        with pytest.raises(UpstreamError) as info:
            run(svc, "hello", tier="smart")
    assert info.value.status_code == 502 and "after retries and fallbacks" in info.value.message
    with svc.db.session() as s:
        row = s.exec(select(ChatTurn).order_by(ChatTurn.id.desc())).first()
    assert row.outcome == "error" and row.tier == "smart"


def test_an_api_key_is_not_named_as_the_user_in_the_prompt(model_services):
    from backend.auth.principal import Principal

    with FakeOpenAI() as server:
        models = [{"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                               "api_base": server.url}}]
        svc = model_services(model_list=models, policy={"default_tier": "smart", "allowed_tiers": ["smart"]})
        key = Principal(subject="key:3f2a", name="API key 3f2a", tenants={"sales": frozenset({"member"})},
                        auth="api_key", scopes=frozenset({"chat"}), key_id="3f2a")
        req = ChatRequest(tenant="sales", assistant="sales-assistant", message="hello there", tier="smart")
        asyncio.run(svc.chat.run(key, req))
        asyncio.run(svc.chat.run(alice(svc), req))
    systems = [r["messages"][0]["content"] for r in server.requests]
    assert "helping a colleague" in systems[0] and "API key" not in systems[0]
    assert "helping alice" in systems[1].lower()


def test_social_messages_are_answered_without_a_search(model_services, mock_models):
    svc = model_services(model_list=mock_models, policy={"default_tier": "smart"})
    queries: list[str] = []
    inner = svc.chat.retriever

    class Recording:
        async def retrieve(self, *, query: str, **kw):  # noqa: ANN003
            queries.append(query)
            return await inner.retrieve(query=query, **kw)

        def __getattr__(self, name: str):  # has_documents, kb_version
            return getattr(inner, name)

    svc.chat.retriever = Recording()
    history = [{"role": "user", "content": "What is the refund window?"}, {"role": "assistant", "content": "30 days."}]
    for message, kw in (("hi", {}), ("thanks, that helps!", {"history": history}), ("👍", {})):
        result = run(svc, message, tier="smart", **kw)
        assert result.answer == "smart says hi" and result.citations == []
    assert queries == []
    run(svc, "What is the refund window?", tier="smart")
    assert queries == ["What is the refund window?"]
