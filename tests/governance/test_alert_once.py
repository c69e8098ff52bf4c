"""suspicious_access raised once across replicas (issue 16): the denials it counts are shared rows, but the "already
alerted this window" mark was each process's own, so N replicas wrote N events. With REDIS_URL the mark is one
SET NX in Redis. Two in-process instances on one database and Redis, then two served replicas."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from backend.container import build_services
from backend.db.engine import Database, make_engine
from backend.db.repositories.audit import list_events
from backend.governance.alert_once import LocalAlertGate, RedisAlertGate
from tests.conftest import free_port, start_server, stop_server

THRESHOLD = 4


def suspicious(services) -> list:
    with services.db.session() as session:
        return list_events(session=session, kind="suspicious_access", limit=1000)


@pytest.fixture
def two_instances(tmp_path, make_settings, request):
    """-> make(database_url, **env): two Services as two replicas would build them (one database)."""
    built = []

    def make(database_url: str, **env):
        pair = [build_services(make_settings(DATABASE_URL=database_url, ATRIUM_INGEST_WORKER="false",
                                             ATRIUM_SUSPICIOUS_DENIALS=str(THRESHOLD),
                                             ATRIUM_DATA_DIR=str(tmp_path / f"replica{i}"), **env))
                for i in range(2)]
        built.extend(pair)
        return pair

    yield make
    for services in built:
        services.close()


def _deny_across(pair, subject: str, n: int) -> None:
    """`n` denials of `subject` split over both replicas, all at once (a barrier lines up the threshold crossing)."""
    barrier = threading.Barrier(n)

    def deny(i: int) -> None:
        barrier.wait(timeout=30)
        pair[i % 2].audit.record("denied", subject=subject, tenant="sales", route=f"/api/t/sales/x{i}",
                                 status=403, reason="tenant_mismatch")

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(deny, range(n)))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_replicas_sharing_redis_raise_one_event(two_instances, tmp_path, redis_url, redis_prefix, database,
                                                    request):
    url = f"sqlite:///{tmp_path / 'shared.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    pair = two_instances(url, REDIS_URL=redis_url, ATRIUM_REDIS_PREFIX=redis_prefix)
    assert all(isinstance(s.audit.alerts, RedisAlertGate) for s in pair)
    _deny_across(pair, "mallory", 3 * THRESHOLD)
    for _ in range(THRESHOLD):  # and more on each side, after the crossing: still within the window
        for services in pair:
            services.audit.record("denied", subject="mallory", tenant="sales", route="/api/t/sales/y",
                                  status=403, reason="tenant_mismatch")
    flagged = suspicious(pair[0])
    assert [(e.subject, e.detail["by"]) for e in flagged] == [("mallory", "subject")]
    assert flagged[0].detail["denials"] >= THRESHOLD
    # Another source in the same window has its own alert.
    _deny_across(pair, "eve", THRESHOLD + 2)
    assert sorted(e.subject for e in suspicious(pair[1])) == ["eve", "mallory"]


def test_without_redis_each_replica_raises_its_own(two_instances, tmp_path):
    """The control (and the single-process default): the same two instances without Redis write two events."""
    pair = two_instances(f"sqlite:///{tmp_path / 'shared.db'}")
    assert all(isinstance(s.audit.alerts, LocalAlertGate) for s in pair)
    _deny_across(pair, "mallory", 3 * THRESHOLD)
    assert [e.subject for e in suspicious(pair[0])] == ["mallory", "mallory"]


def test_the_redis_mark_expires_with_the_window(redis_url, redis_prefix):
    import redis

    gate = RedisAlertGate(redis_url, prefix=redis_prefix)
    try:
        assert gate.first("subject:mallory", 300) is True
        assert gate.first("subject:mallory", 300) is False
        assert gate.first("ip:10.0.0.9", 300) is True  # its own mark
        ttl = redis.Redis.from_url(redis_url).ttl(gate.key("subject:mallory"))
        assert 0 < ttl <= 300
    finally:
        gate.close()


def test_an_unreachable_redis_still_alerts_once_per_process():
    """Redis down: an alert is worth a duplicate across replicas, never a silence."""
    gate = RedisAlertGate(f"redis://127.0.0.1:{free_port()}/0", prefix="alert-test")
    assert gate.first("subject:mallory", 300) is True
    assert gate.first("subject:mallory", 300) is False


def test_two_served_replicas_raise_one_event(tmp_path, redis_url, redis_prefix):
    """Two `atrium serve` processes on one database and Redis; anonymous refusals from one IP through both."""
    db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "ATRIUM_REDIS_PREFIX": redis_prefix,
           "ATRIUM_SUSPICIOUS_DENIALS": str(THRESHOLD), "ATRIUM_INGEST_WORKER": "false"}
    servers = [start_server(tmp_path / f"r{i}", env) for i in range(2)]
    try:
        def refused(i: int) -> int:
            return httpx.get(f"{servers[i % 2].url}/api/t/sales/documents", timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(refused, range(4 * THRESHOLD))) == {401}
        db = Database(make_engine(db_url))
        with db.session() as session:
            flagged = list_events(session=session, kind="suspicious_access", limit=100)
        db.engine.dispose()
        assert [(e.ip, e.detail["by"]) for e in flagged] == [("127.0.0.1", "ip")]
    finally:
        for server in servers:
            stop_server(server)
