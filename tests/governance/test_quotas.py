"""Tenant quotas on both backends: exact admission under concurrency, 429 + Retry-After, 80% warnings,
counters seeded from SQL, tenants and users in separate buckets; refusals that tell "used up" from "this
request does not fit", 0 = blocked, null = unlimited, negative = a start-up error."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.models import ChatTurn
from backend.errors import QuotaExceeded
from backend.governance.quotas import IN_PROGRESS_RETRY_S, QuotaService
from backend.tenants import TenantRegistry
from tests.llm.fakes import make_config_dir, set_tenant

NOW = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    return Database(make_engine(url))


def quota_service(tmp_path, db, make_limits, **quotas) -> QuotaService:
    factory, prefix = make_limits
    cfg = make_config_dir(tmp_path, model_list=[], quotas={"requests_per_minute": None,
                                                          "user_requests_per_minute": None, "tokens_per_day": None,
                                                          "monthly_budget_usd": None, **quotas})
    return QuotaService(backend=factory(), registry=TenantRegistry.load(cfg / "tenants.yaml"), db=db, prefix=prefix)


async def admit_many(svc: QuotaService, n: int, *, tenant="sales", subjects=("alice",), **kw):
    async def one(i):
        try:
            return await svc.admit(tenant=tenant, subject=subjects[i % len(subjects)], now=NOW, **kw)
        except QuotaExceeded as exc:
            return exc
    return await asyncio.gather(*(one(i) for i in range(n)))


def test_tenant_requests_per_minute_exact_under_concurrency(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, requests_per_minute=5)
    results = asyncio.run(admit_many(svc, 9, subjects=("alice", "bob", "carol")))
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 4
    exc = refused[0]
    assert exc.status_code == 429 and exc.limit == "requests_per_minute"
    assert 1 <= int(exc.headers["Retry-After"]) <= 60
    assert "Sales has reached its limit of 5 requests per minute" in exc.message
    assert f"try again in {exc.headers['Retry-After']} s." in exc.message  # same rounding in both
    # Another tenant has its own bucket.
    assert not any(isinstance(r, QuotaExceeded) for r in asyncio.run(admit_many(svc, 5, tenant="finance")))
    single = quota_service(tmp_path, db, make_limits, user_requests_per_minute=1)
    refused = [r for r in asyncio.run(admit_many(single, 2, subjects=("erin",), tenant="engineering"))
               if isinstance(r, QuotaExceeded)]
    assert "your limit of 1 request per minute in Engineering" in refused[0].message


def test_user_requests_per_minute_is_per_user(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, requests_per_minute=100, user_requests_per_minute=2)
    alice = asyncio.run(admit_many(svc, 5, subjects=("alice",)))
    assert sum(not isinstance(r, QuotaExceeded) for r in alice) == 2
    assert {r.limit for r in alice if isinstance(r, QuotaExceeded)} == {"user_requests_per_minute"}
    bob = asyncio.run(admit_many(svc, 2, subjects=("bob",)))
    assert not any(isinstance(r, QuotaExceeded) for r in bob)


def add_turn(db, *, tenant="sales", cost=0.0, tokens=0, when=NOW):
    with db.session() as s:
        s.add(ChatTurn(tenant=tenant, subject="alice", created_at=when, cost_usd=cost, prompt_tokens=tokens))
        s.commit()


def test_budget_seeded_from_sql_warns_at_80_percent_and_refuses_at_100(tmp_path, db, make_limits):
    add_turn(db, cost=0.85)
    add_turn(db, cost=5.0, when=NOW - timedelta(days=40))  # last month: not counted
    add_turn(db, tenant="finance", cost=5.0)  # another tenant: not counted
    svc = quota_service(tmp_path, db, make_limits, monthly_budget_usd=1.0)
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.05, now=NOW))
    # 85% used before this request: its own reservation (0.05) is not usage yet.
    assert adm.warnings == ["Sales has used 85% of its monthly budget of $1.00."]
    asyncio.run(svc.settle(adm, tokens=100, cost_usd=0.15))  # really cost 0.15: now at 1.00
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.01, now=NOW))
    exc = info.value
    assert exc.limit == "monthly_budget_usd"
    assert "Sales has used its monthly budget of $1.00; it resets on 2026-12-01" in exc.message
    assert "A platform operator can raise it in config/tenants.yaml." in exc.message
    assert int(exc.headers["Retry-After"]) == 6 * 86400 + 30 * 60  # Nov 24 23:30 -> Dec 1 00:00


def test_parallel_budget_reservations_do_not_overshoot(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, monthly_budget_usd=1.0)
    results = asyncio.run(admit_many(svc, 10, est_cost_usd=0.3))
    assert sum(not isinstance(r, QuotaExceeded) for r in results) == 3


def test_tokens_per_day_resets_at_midnight_utc(tmp_path, db, make_limits):
    add_turn(db, tokens=950)
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=1000)
    with pytest.raises(QuotaExceeded) as info:  # 50 remain: this request does not fit, a smaller one would
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=NOW))
    assert info.value.limit == "tokens_per_day"
    assert info.value.message == ("This request may need up to 100 tokens (its prompt plus max_tokens) but only 50 "
                                  "of Sales's 1,000 tokens for today remain; lower max_tokens or shorten the "
                                  "conversation, or wait until the limit resets at 2026-11-25 00:00 UTC.")
    assert int(info.value.headers["Retry-After"]) == 30 * 60  # the same request fits after midnight
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=50, now=NOW))  # exactly what remains
    with pytest.raises(QuotaExceeded) as info:  # held by the answer in progress, not used
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=1, now=NOW))
    assert info.value.message == ("Sales has used 950 of its 1,000 tokens today; 50 more are reserved by answers in "
                                  "progress: retry when they finish.")
    assert int(info.value.headers["Retry-After"]) == IN_PROGRESS_RETRY_S
    asyncio.run(svc.settle(adm, tokens=50, cost_usd=0.0))
    with pytest.raises(QuotaExceeded) as info:  # now it is used up
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=1, now=NOW))
    assert info.value.message == "Sales has used its 1,000 tokens for today; the limit resets at 2026-11-25 00:00 UTC."
    assert int(info.value.headers["Retry-After"]) == 30 * 60
    tomorrow = NOW + timedelta(hours=1)
    assert asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=tomorrow)).warnings == []


def test_a_chat_user_who_cannot_set_max_tokens_is_not_told_to_lower_it(tmp_path, db, make_limits):
    add_turn(db, tokens=950, cost=0.0095)
    for quota, kwargs in (({"tokens_per_day": 1000}, {"est_tokens": 100}),
                          ({"monthly_budget_usd": 0.01}, {"est_cost_usd": 0.003})):
        svc = quota_service(tmp_path, db, make_limits, **quota)
        with pytest.raises(QuotaExceeded) as info:
            asyncio.run(svc.admit(tenant="sales", subject="alice", now=NOW, sets_max_tokens=False, **kwargs))
        msg = info.value.message
        assert "max_tokens" not in msg and "cheaper tier" not in msg
        assert "(the conversation so far plus the longest answer allowed)" in msg
        assert "start a new conversation (it sends less history), or wait until" in msg


def test_a_request_larger_than_the_whole_daily_limit_says_so_and_has_no_retry_after(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=1000)
    with pytest.raises(QuotaExceeded) as info:  # a fresh tenant, nothing used; max_tokens 2000
        asyncio.run(svc.admit(tenant="engineering", subject="alice", est_tokens=2000, now=NOW))
    exc = info.value
    assert (exc.status_code, exc.limit) == (429, "tokens_per_day")
    assert "has used" not in exc.message
    assert exc.message.startswith("This request may need up to 2,000 tokens (its prompt plus max_tokens) but only "
                                  "1,000 of Engineering's 1,000 tokens for today remain; lower max_tokens or "
                                  "shorten the conversation")
    assert "waiting will not help" in exc.message
    assert "Retry-After" not in exc.headers and "retry_after" not in exc.extra
    # The refusal reserved nothing: the whole limit is still there.
    adm = asyncio.run(svc.admit(tenant="engineering", subject="alice", est_tokens=1000, now=NOW))
    assert adm.warnings == []


def test_budget_refusal_when_not_used_up_says_what_remains(tmp_path, db, make_limits):
    add_turn(db, cost=0.0023)
    svc = quota_service(tmp_path, db, make_limits, monthly_budget_usd=0.01)
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.005, now=NOW))
    assert adm.warnings == []  # 23% used before it
    with pytest.raises(QuotaExceeded) as info:  # 0.0023 spent + 0.005 in flight: 0.0027 remain
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.008, now=NOW))
    exc = info.value
    assert exc.limit == "monthly_budget_usd" and "has used" not in exc.message
    assert exc.message == ("This request may cost up to $0.008 (its prompt plus max_tokens) but only $0.0027 of "
                           "Sales's monthly budget of $0.01 remains ($0.0023 used, $0.005 reserved by answers in "
                           "progress); lower max_tokens, shorten the conversation or use a cheaper tier, or wait "
                           "until the budget resets on 2026-12-01 (00:00 UTC).")
    assert int(exc.headers["Retry-After"]) == 6 * 86400 + 30 * 60
    with pytest.raises(QuotaExceeded) as info:  # fits once the answer in progress is settled
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.003, now=NOW))
    assert info.value.message == ("Sales has used $0.0023 of its monthly budget of $0.01; $0.005 more is reserved "
                                  "by answers in progress: retry when they finish.")
    asyncio.run(svc.settle(adm, tokens=10, cost_usd=0.001))
    asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.003, now=NOW))
    with pytest.raises(QuotaExceeded) as info:  # more than the whole budget
        asyncio.run(svc.admit(tenant="finance", subject="alice", est_cost_usd=0.02, now=NOW))
    assert "waiting will not help" in info.value.message and "Retry-After" not in info.value.headers


def test_a_budget_below_a_cent_is_named_with_its_digits(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, monthly_budget_usd=0.0003)
    with pytest.raises(QuotaExceeded) as info:
        adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.0002, now=NOW))
        asyncio.run(svc.settle(adm, tokens=1, cost_usd=0.0002))
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.0002, now=NOW))
    assert "only $0.0001 of Sales's monthly budget of $0.0003 remains" in info.value.message  # not "$0.00"


def test_token_warning_counts_usage_before_this_request(tmp_path, db, make_limits):
    add_turn(db, tokens=54)
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=1000)
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=890, now=NOW))  # 54 + 890 = 94%
    assert adm.warnings == []
    asyncio.run(svc.settle(adm, tokens=800, cost_usd=0.0))  # 854 used
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=NOW))
    assert adm.warnings == ["Sales has used 85% of today's 1,000 tokens."]


@pytest.mark.parametrize(("field", "message"), [
    ("monthly_budget_usd", "Finance's monthly budget is $0: model calls are switched off; a platform operator can "
                           "raise it in config/tenants.yaml."),
    ("tokens_per_day", "Finance's limit is 0 tokens a day: model calls are switched off"),
    ("requests_per_minute", "Finance's limit is 0 requests per minute: model calls are switched off"),
    ("user_requests_per_minute", "Finance's limit is 0 requests per minute per user: model calls are switched off"),
])
def test_a_zero_quota_blocks_even_free_calls(tmp_path, db, make_limits, field, message):
    svc = quota_service(tmp_path, db, make_limits, **{field: 0})
    with pytest.raises(QuotaExceeded) as info:  # nothing estimated (a cached answer, the local model): still off
        asyncio.run(svc.admit(tenant="finance", subject="alice", now=NOW))
    exc = info.value
    assert (exc.status_code, exc.limit) == (429, field)
    assert exc.message.startswith(message)
    assert "Retry-After" not in exc.headers  # waiting does not help


def test_null_quotas_are_unlimited(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits)  # every quota null
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=10**9, est_cost_usd=10**6, now=NOW))
    assert (adm.token_key, adm.budget_key, adm.warnings) == (None, None, [])


@pytest.mark.parametrize("field", ["requests_per_minute", "user_requests_per_minute", "tokens_per_day",
                                   "monthly_budget_usd"])
def test_a_negative_quota_stops_the_start_up_naming_tenant_and_field(tmp_path, field):
    cfg = make_config_dir(tmp_path, model_list=[])
    set_tenant(cfg, "finance", quotas={field: -1})
    with pytest.raises(ValueError) as info:
        TenantRegistry.load(cfg / "tenants.yaml")
    text = str(info.value)
    assert f"tenant 'finance': quotas.{field}: " in text and "greater than or equal to 0" in text
    assert "null for unlimited, 0 to block" in text


def test_release_returns_the_reservation(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=100)
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=NOW))
    with pytest.raises(QuotaExceeded):
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=1, now=NOW))
    asyncio.run(svc.release(adm))  # the model call failed: nothing was used
    asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=NOW))


def test_refusals_are_logged_under_the_tenant_id_as_every_other_logger_does(tmp_path, db, caplog):
    """The message to the user says "Sales"; the log line's `tenant` is the id `sales` (what log queries filter on)."""
    import logging

    from backend.governance.ratelimit import MemoryLimits

    svc = quota_service(tmp_path, db, (MemoryLimits, "atrium-test"), requests_per_minute=1, tokens_per_day=0)
    with caplog.at_level(logging.INFO, logger="atrium.quotas"), pytest.raises(QuotaExceeded):
        asyncio.run(svc.admit(tenant="sales", subject="alice", now=NOW))  # blocked (0 tokens a day)
    svc = quota_service(tmp_path, db, (MemoryLimits, "atrium-test"), requests_per_minute=1)
    asyncio.run(svc.admit(tenant="sales", subject="alice", now=NOW))
    with caplog.at_level(logging.INFO, logger="atrium.quotas"), pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="sales", subject="alice", now=NOW))  # refused (1 request a minute)
    assert "Sales has reached its limit" in info.value.message
    refused = [r for r in caplog.records if r.getMessage() == "quota refused"]
    assert [(r.tenant, r.limit) for r in refused] == [("sales", "tokens_per_day"), ("sales", "requests_per_minute")]


def test_refusal_separates_used_from_reserved_by_answers_in_progress(tmp_path, db, make_limits):
    """The issue's case: 300 used, 700 held by answers in progress; a request of 100 is refused as "retry when they
    finish", never as "has used its 1,000 tokens"; once they settle (using less), it is admitted."""
    add_turn(db, tenant="finance", tokens=300)
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=1000)
    holds = [asyncio.run(svc.admit(tenant="finance", subject="fiona", est_tokens=n, now=NOW)) for n in (400, 300)]
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="finance", subject="fiona", est_tokens=100, now=NOW))
    exc = info.value
    assert exc.message == ("Finance has used 300 of its 1,000 tokens today; 700 more are reserved by answers in "
                           "progress: retry when they finish.")
    assert "has used its" not in exc.message and exc.retry_after == IN_PROGRESS_RETRY_S
    assert asyncio.run(svc.reserved("finance", now=NOW))["tokens"] == 700
    for adm in holds:
        asyncio.run(svc.settle(adm, tokens=200, cost_usd=0.0))
    assert asyncio.run(svc.reserved("finance", now=NOW))["tokens"] == 0
    asyncio.run(svc.admit(tenant="finance", subject="fiona", est_tokens=100, now=NOW))  # 700 used + 100 fits


def test_a_lapsed_reservation_stops_counting_and_charge_sync_counts_what_it_used(tmp_path, db, make_limits):
    """A process that died: its hold lapses after the lease; what its turn streamed is charged by the survivor."""
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=1000)
    svc.lease_s = 1.0
    asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=900, now=NOW))  # never settled: "died"
    dead = svc._live.popitem()[1]  # the dead process renews nothing
    assert dead.reserved_tokens == 900
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and asyncio.run(svc.reserved("sales", now=NOW))["tokens"]:
        time.sleep(0.2)
    assert asyncio.run(svc.reserved("sales", now=NOW))["tokens"] == 0
    svc.charge_sync(tenant="sales", at=NOW, tokens=120, cost_usd=0.0)
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=900, now=NOW))
    assert "only 880 of Sales's 1,000 tokens for today remain" in info.value.message
