"""Members' raised allowances cached per process (governance/allowance_cache.py) without breaking "a raised limit
applies at once on every replica": two replicas' services on one set of counters (both backends; Redis the real one)
and one database; a raise committed and published on one is what the other's very next admission applies, and the
entries it had are read again from SQL only then."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from backend.db.engine import Database
from backend.db.repositories.allowances import raise_allowance
from backend.errors import QuotaExceeded
from backend.governance import allowance_cache
from backend.governance.quotas import QuotaService
from tests.governance.conftest import quota_services

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def sql_reads(monkeypatch) -> list[tuple[str, str]]:
    """(tenant, subject) of every SQL read of a raise."""
    reads: list[tuple[str, str]] = []
    real = allowance_cache.raised_allowance

    def counted(db, tenant, subject, month):  # noqa: ANN001, ANN202 - the real function's signature
        reads.append((tenant, subject))
        return real(db, tenant, subject, month)

    monkeypatch.setattr(allowance_cache, "raised_allowance", counted)
    return reads


def replicas(tmp_path, db, make_limits, cache_s: float = 60.0) -> list[QuotaService]:
    return quota_services(tmp_path, db, make_limits, n=2, sales={"member": {"tokens_per_day": 1000}},
                          allowance_cache_s=cache_s)


def admit(svc: QuotaService, tokens: int, subject: str = "alice"):
    return asyncio.run(svc.admit(tenant="sales", subject=subject, est_tokens=tokens, now=NOW))


def raise_for(db: Database, svc: QuotaService, subject: str, tokens_per_day: int) -> None:
    """What MemberUsage.raise_allowance does on the replica the admin asked: commit, then publish (on_raised)."""
    with db.session() as session:
        raise_allowance(session=session, tenant="sales", subject=subject, month="202611",
                        tokens_per_day=tokens_per_day, monthly_budget_usd=None, granted_by="ann")
    svc.raised.raised("sales")


def test_a_raise_on_one_replica_applies_to_the_next_admission_on_the_other(tmp_path, db, make_limits, sql_reads):
    first, second = replicas(tmp_path, db, make_limits)
    for svc in (first, second):  # both have read and kept alice's (no raise yet)
        asyncio.run(svc.release(admit(svc, 100)))
    asyncio.run(second.release(admit(second, 100)))
    assert sql_reads == [("sales", "alice"), ("sales", "alice")]  # one read per replica, then the kept copy
    with pytest.raises(QuotaExceeded):
        admit(second, 5000)
    raise_for(db, first, "alice", 10_000)  # on the first replica
    adm = admit(second, 5000)  # the second's very next admission
    assert adm.levels[0].limit == 10_000 and adm.allowance == "default"
    assert sql_reads[-1] == ("sales", "alice") and len(sql_reads) == 3  # read again once, then kept
    asyncio.run(second.release(adm))
    asyncio.run(second.release(admit(second, 5000)))
    assert len(sql_reads) == 3
    # Another member of the tenant is not raised.
    with pytest.raises(QuotaExceeded):
        admit(second, 5000, subject="bob")


def test_without_a_cache_every_admission_reads_sql(tmp_path, db, make_limits, sql_reads):
    """allowance_cache_s=0: what the container gives replicas whose raises would not reach each other (in-process
    counters on more than one node): each admission reads the raise, as before."""
    first, second = replicas(tmp_path, db, make_limits, cache_s=0)
    for _ in range(3):
        asyncio.run(second.release(admit(second, 100)))
    assert len(sql_reads) == 3
    with db.session() as session:  # a raise nobody publishes
        raise_allowance(session=session, tenant="sales", subject="alice", month="202611", tokens_per_day=10_000,
                        monthly_budget_usd=None, granted_by="ann")
    assert admit(second, 5000).levels[0].limit == 10_000


def test_the_container_caches_only_where_raises_reach_every_replica(make_settings, redis_url):
    from backend.container import build_services

    for env, cached in (({}, False), ({"ATRIUM_SINGLE_NODE": "true"}, True), ({"REDIS_URL": redis_url}, True)):
        services = build_services(make_settings(**env))
        try:
            assert (services.quotas.raised.ttl_s > 0) is cached, env
            assert services.member_usage.on_raised == services.quotas.raised.raised
        finally:
            services.close()
