"""Tenant quotas on both backends: exact admission under concurrency, 429 + Retry-After, 80% warnings,
counters seeded from SQL, tenants and users in separate buckets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.models import ChatTurn
from backend.errors import QuotaExceeded
from backend.governance.quotas import QuotaService
from backend.tenants import TenantRegistry
from tests.llm.fakes import make_config_dir

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
    # Another tenant has its own bucket.
    assert not any(isinstance(r, QuotaExceeded) for r in asyncio.run(admit_many(svc, 5, tenant="finance")))


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
    assert adm.warnings == ["Sales has used 90% of its monthly budget of $1.00."]
    asyncio.run(svc.settle(adm, tokens=100, cost_usd=0.15))  # really cost 0.15: now at 1.00
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_cost_usd=0.01, now=NOW))
    exc = info.value
    assert exc.limit == "monthly_budget_usd"
    assert "monthly budget of $1.00; it resets on 2026-12-01" in exc.message
    assert int(exc.headers["Retry-After"]) == 6 * 86400 + 30 * 60  # Nov 24 23:30 -> Dec 1 00:00


def test_parallel_budget_reservations_do_not_overshoot(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, monthly_budget_usd=1.0)
    results = asyncio.run(admit_many(svc, 10, est_cost_usd=0.3))
    assert sum(not isinstance(r, QuotaExceeded) for r in results) == 3


def test_tokens_per_day_resets_at_midnight_utc(tmp_path, db, make_limits):
    add_turn(db, tokens=950)
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=1000)
    with pytest.raises(QuotaExceeded) as info:
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=NOW))
    assert info.value.limit == "tokens_per_day"
    assert "resets at 2026-11-25 00:00 UTC" in info.value.message
    assert int(info.value.headers["Retry-After"]) == 30 * 60
    tomorrow = NOW + timedelta(hours=1)
    assert asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=tomorrow)).warnings == []


def test_release_returns_the_reservation(tmp_path, db, make_limits):
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=100)
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=NOW))
    with pytest.raises(QuotaExceeded):
        asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=1, now=NOW))
    asyncio.run(svc.release(adm))  # the model call failed: nothing was used
    asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, now=NOW))
