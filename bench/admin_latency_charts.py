"""/admin's latency charts over a year: p50/p95 per day picked in SQL (repositories/ops_series.turn_health, window
ranks) against reading every answered turn's latency into the process and ranking in Python (what the page did
before), on SQLite (and PostgreSQL with ATRIUM_BENCH_POSTGRES_URL).

    .venv/bin/python bench/admin_latency_charts.py --turns 366000

Prints each way's time and the process's peak Python memory (tracemalloc, a second pass), and checks both agree.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import select  # noqa: E402

from backend.db.engine import Database, make_engine  # noqa: E402
from backend.db.migrate import upgrade  # noqa: E402
from backend.db.models import ChatTurn  # noqa: E402
from backend.db.repositories.ops_series import turn_health  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)


def in_python(session, since, until, tenants) -> dict[str, dict]:  # noqa: ANN001
    """The former way: every latency of the range into a list per day, then nearest rank."""
    day = sa.func.date(ChatTurn.created_at)
    per_day: dict[str, list[int]] = {}
    for key, ms in session.execute(select(day, ChatTurn.latency_ms).where(
            ChatTurn.created_at >= since, ChatTurn.created_at < until, ChatTurn.tenant.in_(tenants),
            ChatTurn.status != "streaming", ChatTurn.outcome == "ok", ChatTurn.latency_ms > 0)):
        per_day.setdefault(str(key), []).append(int(ms))
    out = {}
    for key, values in per_day.items():
        ordered = sorted(values)
        rank = lambda q: float(ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))])  # noqa: E731, B023
        out[key] = {"p50": rank(0.5), "p95": rank(0.95)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=366_000)
    args = parser.parse_args()
    urls = [("sqlite", f"sqlite:///{tempfile.mkdtemp()}/bench.db")]
    if os.environ.get("ATRIUM_BENCH_POSTGRES_URL"):
        urls.append(("postgresql", os.environ["ATRIUM_BENCH_POSTGRES_URL"]))
    rng = random.Random(1)
    rows = [{"tenant": "sales", "subject": "x", "turn_key": f"bench-{i}", "status": "completed", "channel": "api",
             "created_at": START + timedelta(seconds=i * 86400 * 366 // args.turns), "outcome": "ok",
             "latency_ms": rng.randint(1, 9000), "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
            for i in range(args.turns)]
    for name, url in urls:
        upgrade(url)
        db = Database(make_engine(url))
        with db.engine.begin() as conn:
            conn.execute(sa.delete(ChatTurn.__table__).where(ChatTurn.__table__.c.turn_key.like("bench-%")))
            conn.execute(sa.insert(ChatTurn.__table__), rows)
        since, until = START, START + timedelta(days=367)
        results = {}
        for way, fn in (("python (before)", in_python), ("sql ranks (now)", turn_health)):
            with db.session() as s:
                began = time.perf_counter()
                got = fn(s, since, until, ["sales"]) if fn is in_python else fn(
                    session=s, since=since, until=until, tenants=["sales"])
                took = time.perf_counter() - began
            tracemalloc.start()
            with db.session() as s:
                fn(s, since, until, ["sales"]) if fn is in_python else fn(
                    session=s, since=since, until=until, tenants=["sales"])
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            results[way] = {d: (v["p50"], v["p95"]) for d, v in got.items()}
            print(f"{name}: {way}: {took:.2f} s, peak Python memory {peak / 1e6:.1f} MB, {len(got)} days")
        assert results["python (before)"] == results["sql ranks (now)"], "the two ways disagree"
        with db.engine.begin() as conn:
            conn.execute(sa.delete(ChatTurn.__table__).where(ChatTurn.__table__.c.turn_key.like("bench-%")))
        db.engine.dispose()


if __name__ == "__main__":
    main()
