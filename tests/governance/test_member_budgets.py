"""Nested budgets on both backends: a member's allowance and an assistant's budget inside the tenant's. Parallel
admissions at the edge admit exactly what fits (nothing overshoots); each level is settled with the call; a refusal
names the level and when it resets; overrides per role and claim group; a raised allowance applies at once on
another replica (another QuotaService on the same counters and database)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from backend.db.repositories.allowances import raise_allowance
from backend.errors import QuotaExceeded
from backend.governance.quotas import QuotaService
from backend.tenants import TenantRegistry
from tests.governance.conftest import quota_services
from tests.llm.fakes import make_config_dir, set_tenant

NOW = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


async def admit_many(svcs: list[QuotaService], n: int, *, subject="alice", **kw) -> list:
    async def one(i):
        try:
            return await svcs[i % len(svcs)].admit(tenant="sales", subject=subject, now=NOW, **kw)
        except QuotaExceeded as exc:
            return exc
    return await asyncio.gather(*(one(i) for i in range(n)))


def admitted(results) -> list:
    return [r for r in results if not isinstance(r, QuotaExceeded)]


def test_parallel_requests_at_the_edge_of_a_members_allowance_admit_exactly_what_fits(tmp_path, db, make_limits):
    svcs = quota_services(tmp_path, db, make_limits, n=2, tokens_per_day=100_000, monthly_budget_usd=100,
                    member={"tokens_per_day": 1000, "monthly_budget_usd": 1.0})

    async def scenario():
        tokens = await admit_many(svcs, 12, est_tokens=300, est_cost_usd=0.01)  # 3 x 300 fit in 1,000
        for adm in admitted(tokens):
            await svcs[0].settle(adm, tokens=300, cost_usd=0.01)
        dollars = await admit_many(svcs, 12, subject="bob", est_tokens=10, est_cost_usd=0.3)  # 3 x 0.3 fit in 1.0
        for adm in admitted(dollars):
            await svcs[1].settle(adm, tokens=10, cost_usd=0.3)
        alice_tokens, _ = svcs[0].member_keys("sales", "alice", now=NOW)
        _, bob_usd = svcs[0].member_keys("sales", "bob", now=NOW)
        return tokens, dollars, await svcs[0].backend.get(alice_tokens), await svcs[1].backend.get(bob_usd)

    tokens, dollars, alice_used, bob_used = asyncio.run(scenario())
    assert len(admitted(tokens)) == 3 and alice_used == 900  # admitted 3 of 12; overshoot 0
    assert {r.limit for r in tokens if isinstance(r, QuotaExceeded)} == {"member_tokens_per_day"}
    assert len(admitted(dollars)) == 3 and bob_used == 900_000  # micro-USD: $0.90 of $1.00
    refusal = next(r for r in dollars if isinstance(r, QuotaExceeded))
    assert refusal.extra["level"] == "member" and refusal.extra["resets_at"] == "2026-12-01T00:00:00+00:00"
    assert "your monthly allowance of $1.00 in Sales" in refusal.message
    # The tenant's counters took every settled call too (one settlement for all the levels).
    assert asyncio.run(svcs[0].backend.get(svcs[0]._key("sales", "tokens", "20261124"))) == 930
    # Another member is served: the allowance is each member's own.
    assert admitted(asyncio.run(admit_many(svcs, 1, subject="carol", est_tokens=300)))


def test_a_member_at_their_limit_is_refused_with_their_level_and_reset(tmp_path, db, make_limits):
    (svc,) = quota_services(tmp_path, db, make_limits, tokens_per_day=100_000, member={"tokens_per_day": 500})
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=500, now=NOW))
    asyncio.run(svc.settle(adm, tokens=500, cost_usd=0.0))
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=10, now=NOW))
    exc = info.value
    assert exc.limit == "member_tokens_per_day" and exc.extra["level"] == "member"
    assert exc.message == ("You have used your allowance of 500 tokens for today in Sales; it resets at 2026-11-25 "
                           "00:00 UTC. A tenant admin of Sales can raise it for this month.")
    assert int(exc.headers["Retry-After"]) == 30 * 60


def test_overrides_per_role_and_claim_group(tmp_path, db, make_limits):
    (svc,) = quota_services(tmp_path, db, make_limits, member={"tokens_per_day": 100, "monthly_budget_usd": 1.0},
                      member_overrides=[{"name": "admins", "role": "tenant_admin", "tokens_per_day": 1000},
                                        {"name": "interns", "any_of": ["sales-interns"], "monthly_budget_usd": 0.1}])
    cfg = svc.registry.get("sales")
    admin = asyncio.run(svc.allowance(cfg, "ann", roles=frozenset({"member", "tenant_admin"}), now=NOW))
    intern = asyncio.run(svc.allowance(cfg, "ivy", groups=frozenset({"interns"}), now=NOW))
    plain = asyncio.run(svc.allowance(cfg, "pat", now=NOW))
    assert (admin.tokens_per_day, admin.monthly_budget_usd, admin.source) == (1000, 1.0, "admins")
    assert (intern.tokens_per_day, intern.monthly_budget_usd, intern.source) == (100, 0.1, "interns")
    assert (plain.tokens_per_day, plain.source) == (100, "default")
    asyncio.run(svc.admit(tenant="sales", subject="ann", roles=frozenset({"tenant_admin"}), est_tokens=900, now=NOW))
    with pytest.raises(QuotaExceeded):
        asyncio.run(svc.admit(tenant="sales", subject="pat", est_tokens=900, now=NOW))


def test_an_assistants_budget_stops_only_that_assistant(tmp_path, db, make_limits):
    (svc,) = quota_services(tmp_path, db, make_limits, monthly_budget_usd=100,
                      sales={"assistants": {"deal-desk": {"monthly_budget_usd": 0.5}}})
    results = asyncio.run(admit_many([svc], 5, assistant="deal-desk", est_cost_usd=0.2))
    assert len(admitted(results)) == 2
    refusal = next(r for r in results if isinstance(r, QuotaExceeded))
    assert refusal.limit == "assistant_monthly_budget_usd" and refusal.extra["level"] == "assistant"
    assert refusal.message == ("Deal Desk has used $0.00 of its monthly budget of $0.50; $0.40 more is reserved by "
                               "answers in progress: retry when they finish.")
    for adm in admitted(results):
        asyncio.run(svc.settle(adm, tokens=10, cost_usd=0.25))
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="sales", subject="bob", assistant="deal-desk", est_cost_usd=0.01, now=NOW))
    assert info.value.message == ("Deal Desk has used its monthly budget of $0.50; it resets on 2026-12-01 (00:00 "
                                  "UTC). Other assistants of Sales still answer; a platform operator can raise it in "
                                  "tenants.yaml.")
    # The same member on the other assistant is served.
    assert admitted(asyncio.run(admit_many([svc], 2, assistant="sales-assistant", est_cost_usd=0.2)))


def test_a_raised_allowance_applies_at_once_on_another_replica(tmp_path, db, make_limits):
    first, second = quota_services(tmp_path, db, make_limits, n=2, member={"monthly_budget_usd": 0.5})
    adm = asyncio.run(first.admit(tenant="sales", subject="alice", est_cost_usd=0.5, now=NOW))
    asyncio.run(first.settle(adm, tokens=10, cost_usd=0.5))
    with pytest.raises(QuotaExceeded):
        asyncio.run(second.admit(tenant="sales", subject="alice", est_cost_usd=0.1, now=NOW))
    with db.session() as session:
        raise_allowance(session=session, tenant="sales", subject="alice", month="202611", tokens_per_day=None,
                        monthly_budget_usd=2.0, granted_by="ann")
    adm = asyncio.run(second.admit(tenant="sales", subject="alice", est_cost_usd=0.1, now=NOW))
    assert adm.levels[0].limit == 2_000_000
    # Another member's allowance, and another tenant's member, are not raised.
    with pytest.raises(QuotaExceeded):
        asyncio.run(first.admit(tenant="sales", subject="bob", est_cost_usd=0.6, now=NOW))


def test_a_free_call_counts_tokens_never_dollars(tmp_path, db, make_limits):
    (svc,) = quota_services(tmp_path, db, make_limits, member={"tokens_per_day": 1000, "monthly_budget_usd": 0.1})
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.1, now=NOW))
    asyncio.run(svc.settle(adm, tokens=0, cost_usd=0.1))  # the dollars are spent
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, dollars=False, now=NOW))
    assert [lv.name for lv in adm.levels] == ["member_tokens_per_day"]


def test_overrides_and_assistant_budgets_are_checked_at_start_up(tmp_path):
    from backend.config_files import ConfigError

    for quotas, words in [({"assistants": {"nope": {"monthly_budget_usd": 1}}}, "'nope' is not one of"),
                          ({"member_overrides": [{"name": "x"}]}, "matches nobody"),
                          ({"on_budget": "shrug"}, "on_budget")]:
        cfg = make_config_dir(tmp_path, model_list=[])
        set_tenant(cfg, "sales", quotas=quotas)
        with pytest.raises(ConfigError, match=words):
            TenantRegistry.load(cfg / "tenants.yaml")


def test_a_members_claim_groups_choose_their_override(tmp_path):
    from backend.auth.claims import claims_to_principal

    cfg = make_config_dir(tmp_path, model_list=[])
    set_tenant(cfg, "sales", quotas={"member_overrides": [
        {"name": "interns", "any_of": ["sales-interns"], "monthly_budget_usd": 1},
        {"name": "leads", "claim": "realm_access.roles", "any_of": ["lead"], "monthly_budget_usd": 50}]})
    registry = TenantRegistry.load(cfg / "tenants.yaml")
    ivy = claims_to_principal({"sub": "ivy", "groups": ["sales", "sales-interns"]}, registry)
    lee = claims_to_principal({"sub": "lee", "groups": ["sales"], "realm_access": {"roles": ["lead"]}}, registry)
    pat = claims_to_principal({"sub": "pat", "groups": ["sales"]}, registry)
    assert ivy.limit_groups == {"sales": frozenset({"interns"})}
    assert lee.limit_groups == {"sales": frozenset({"leads"})}
    assert pat.limit_groups == {}


def test_a_dead_processs_turns_are_charged_to_the_member_and_the_assistant(tmp_path, db, make_limits):
    (svc,) = quota_services(tmp_path, db, make_limits, member={"tokens_per_day": 1000},
                      sales={"assistants": {"deal-desk": {"monthly_budget_usd": 1.0}}})
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", assistant="deal-desk", est_tokens=10,
                                est_cost_usd=0.01, now=NOW))
    asyncio.run(svc.settle(adm, tokens=10, cost_usd=0.01))  # the counters exist (a missing one seeds from SQL)
    svc.charge_sync(tenant="sales", at=NOW, tokens=300, cost_usd=0.2, subject="alice", assistant="deal-desk")
    tokens_key, _ = svc.member_keys("sales", "alice", now=NOW)
    assert asyncio.run(svc.backend.get(tokens_key)) == 310
    assert asyncio.run(svc.backend.get(svc._key("sales", "assistant", "deal-desk", "usd", "202611"))) == 210_000
