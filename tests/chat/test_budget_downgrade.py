"""`on_budget` in the pipeline: a member whose allowance no longer fits the routed tier is answered on the next
cheaper allowed tier that fits (saying so once, recorded on the usage row), or refused when nothing fits or the
policy refuses — while another member of the tenant is served on the tier routed. Never outside allowed_tiers."""

from __future__ import annotations

import pytest

from backend.db.models import ChatTurn
from backend.errors import QuotaExceeded
from backend.tenants import AssistantBudget
from tests.llm.conftest import NO_QUOTAS
from tests.llm.fakes import mock
from tests.llm.test_models import run, turn_row

THREE = [mock("fast", "anthropic/claude-haiku-5-5", "fast says hi"),
         mock("smart", "anthropic/claude-sonnet-5-5", "smart says hi"),
         mock("local", "openai/gpt-4o-mini", "local says hi")]


def spent(svc, subject: str, cost: float, tokens: int = 0) -> None:
    with svc.db.session() as s:
        s.add(ChatTurn(tenant="sales", subject=subject, cost_usd=cost, prompt_tokens=tokens))
        s.commit()


def bob_run(svc, message: str, **kw):
    import asyncio

    from backend.chat.types import ChatRequest

    bob = svc.principal_from_claims({"sub": "bob", "preferred_username": "bob", "groups": ["sales"]})
    return asyncio.run(svc.chat.run(bob, ChatRequest(tenant="sales", assistant="sales-assistant", message=message,
                                                     **kw)))


def test_a_spent_allowance_is_answered_on_the_next_cheaper_tier_that_fits(model_services):
    svc = model_services(model_list=THREE, quotas={**NO_QUOTAS, "on_budget": "downgrade",
                                                   "member": {"monthly_budget_usd": 1.0}})
    spent(svc, "alice", 0.999)  # $0.001 left: not a smart answer (~$0.003 reserved), a fast one (~$0.0002)
    result = run(svc, "hello", tier="smart")
    assert (result.tier, result.downgraded_from, result.answer) == ("fast", "smart", "fast says hi")
    notes = [w for w in result.warnings if w.startswith("Answered by")]
    assert len(notes) == 1 and notes[0].startswith("Answered by the fast tier instead of smart: This request may "
                                                   "need up to $0.00")
    assert "of your monthly allowance of $1.00 in Sales remain" in notes[0] and "wait until it resets on" in notes[0]
    row = turn_row(svc, result.turn_id)
    assert (row.tier, row.downgraded_from, row.downgrade_reason) == ("fast", "smart", "member_monthly_budget_usd")
    assert "downgraded from smart to fast: member_monthly_budget_usd" in row.route_reason
    # Spent to the cent: the local model (no dollars) answers; its tokens still count.
    spent(svc, "alice", 0.001)
    svc = model_services(model_list=THREE, quotas={**NO_QUOTAS, "on_budget": "downgrade",  # seeds from SQL
                                                   "member": {"monthly_budget_usd": 1.0}})
    result = run(svc, "hello", tier="smart")
    assert (result.tier, result.downgraded_from) == ("local", "smart")
    assert "You have used your monthly allowance of $1.00 in Sales; it resets on" in result.warnings[-1]
    # Another member of the tenant is served on the tier routed.
    assert bob_run(svc, "hello", tier="smart").tier == "smart"


def test_nothing_fits_or_the_policy_refuses_then_a_429_naming_the_member(model_services):
    svc = model_services(model_list=THREE, quotas={**NO_QUOTAS, "on_budget": "downgrade",
                                                   "member": {"tokens_per_day": 1000}})
    spent(svc, "alice", 0.0, tokens=1000)  # tokens count on every tier, the local one too
    with pytest.raises(QuotaExceeded) as info:
        run(svc, "hello", tier="smart")
    assert info.value.limit == "member_tokens_per_day" and info.value.extra["level"] == "member"
    assert "You have used your allowance of 1,000 tokens for today in Sales" in info.value.message
    assert bob_run(svc, "hello", tier="smart").tier == "smart"

    refuse = model_services(model_list=THREE, quotas={**NO_QUOTAS, "member": {"monthly_budget_usd": 1.0}})
    spent(refuse, "alice", 1.0)
    with pytest.raises(QuotaExceeded) as info:  # on_budget: refuse (the default)
        run(refuse, "hello", tier="smart")
    assert info.value.limit == "member_monthly_budget_usd"


def test_a_downgrade_never_leaves_allowed_tiers(model_services):
    svc = model_services(model_list=THREE, policy={"allowed_tiers": ["fast", "smart"]},
                         quotas={**NO_QUOTAS, "on_budget": "downgrade", "member": {"monthly_budget_usd": 1.0}})
    spent(svc, "alice", 1.0)  # fast does not fit, and local (free) is not this tenant's
    with pytest.raises(QuotaExceeded) as info:
        run(svc, "hello", tier="smart")
    assert info.value.limit == "member_monthly_budget_usd"
    with svc.db.session() as s:
        from sqlmodel import select

        tiers = {r.tier for r in s.exec(select(ChatTurn).where(ChatTurn.subject == "alice"))}
    assert "local" not in tiers


def test_the_department_budget_downgrades_too(model_services):
    svc = model_services(model_list=THREE, quotas={**NO_QUOTAS, "on_budget": "downgrade", "monthly_budget_usd": 1.0})
    spent(svc, "carol", 1.0)
    result = run(svc, "hello", tier="smart")
    assert (result.tier, result.downgraded_from) == ("local", "smart")
    assert "Sales has used its monthly budget of $1.00" in result.warnings[-1]


def test_internal_calls_count_against_the_member_who_caused_them(model_services):
    import asyncio
    from datetime import UTC, datetime

    from tests.llm.test_models import alice

    svc = model_services(model_list=THREE, quotas={**NO_QUOTAS, "member": {"tokens_per_day": 100_000}})
    # The assistant's own cap, as Sales' tenants.yaml entry would give it (model_services configures every tenant).
    svc.registry.get("sales").quotas.assistants["deal-desk"] = AssistantBudget(monthly_budget_usd=1.0)
    result = asyncio.run(svc.chat.internal(alice(svc), "sales", task="query_rewrite", assistant="deal-desk",
                                           messages=[{"role": "user", "content": "rewrite this"}]))
    tokens_key, usd_key = svc.quotas.member_keys("sales", "alice", now=datetime.now(UTC))
    used = asyncio.run(svc.quotas.backend.get(tokens_key))
    assert used == result.prompt_tokens + result.completion_tokens > 0
    assistant_key = svc.quotas._key("sales", "assistant", "deal-desk", "usd", datetime.now(UTC).strftime("%Y%m"))
    assert asyncio.run(svc.quotas.backend.get(assistant_key)) == round(result.cost_usd * 1_000_000)
    assert turn_row(svc, result.turn_id).allowance == "default"
    # Spent: the member's internal calls are refused too (a title or a rewrite is then skipped by its caller).
    spent(svc, "alice", 0.0, tokens=200_000)
    fresh = model_services(model_list=THREE, quotas={**NO_QUOTAS, "member": {"tokens_per_day": 100_000}})
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(fresh.chat.internal(alice(fresh), "sales", task="title",
                                        messages=[{"role": "user", "content": "a title"}]))
    assert info.value.limit == "member_tokens_per_day"
