"""/admin's latency charts: p50 and p95 per day are picked in SQL (two rows a day come back, not every turn's
latency, whatever the range), on SQLite and PostgreSQL, and equal the nearest-rank percentiles of the turns'
recorded latencies computed here in Python."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.models import ChatTurn
from backend.db.repositories.ops_series import turn_health


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    return request.getfixturevalue("postgres_url")


def nearest_rank(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))])


def test_p50_and_p95_per_day_are_the_nearest_ranks(sql_url):
    from backend.settings import _normalise_db_url

    url = _normalise_db_url(sql_url)
    upgrade(url)
    db = Database(make_engine(url))
    rng = random.Random(18)
    first = datetime(2026, 11, 1, 12, tzinfo=UTC)
    kept: dict[str, list[int]] = {}
    with db.session() as s:
        for d, n in enumerate((1, 2, 3, 4, 19, 20, 21, 40, 101)):  # sizes where the ranks' rounding differs
            day = first + timedelta(days=d)
            for i in range(n):
                ms = rng.randint(1, 5000)
                s.add(ChatTurn(tenant="sales", subject="x", created_at=day + timedelta(seconds=i), outcome="ok",
                               latency_ms=ms))
                kept.setdefault(day.date().isoformat(), []).append(ms)
            # Left out of the percentiles: errors, unrecorded latencies, another tenant, a turn still streaming.
            s.add(ChatTurn(tenant="sales", subject="x", created_at=day, outcome="error", latency_ms=99_999))
            s.add(ChatTurn(tenant="sales", subject="x", created_at=day, outcome="ok", latency_ms=0))
            s.add(ChatTurn(tenant="finance", subject="x", created_at=day, outcome="ok", latency_ms=88_888))
            s.add(ChatTurn(tenant="sales", subject="x", created_at=day, outcome="ok", latency_ms=77_777,
                           status="streaming"))
        s.commit()
    with db.session() as s:
        health = turn_health(session=s, since=first - timedelta(days=1), until=first + timedelta(days=30),
                             tenants=["sales"])
    db.engine.dispose()
    assert set(health) == set(kept)
    for day, values in kept.items():
        assert health[day]["p50"] == nearest_rank(values, 0.5), (day, len(values))
        assert health[day]["p95"] == nearest_rank(values, 0.95), (day, len(values))
        assert health[day]["calls"] == len(values) + 2 and health[day]["errors"] == 1
