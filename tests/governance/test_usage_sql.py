"""Usage rows and reports on both SQL backends (SQLite file, the machine's PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.repositories.usage import new_turn, sum_usage
from backend.errors import Invalid
from backend.governance.usage import UsageService, UsageWriter


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'usage.db'}"
    return request.getfixturevalue("postgres_url")


def test_group_commit_and_report(sql_url):
    from backend.settings import _normalise_db_url

    url = _normalise_db_url(sql_url)
    upgrade(url)
    db = Database(make_engine(url))
    writer = UsageWriter(db=db)
    day1, day2 = datetime(2026, 11, 2, 23, 59, tzinfo=UTC), datetime(2026, 11, 3, 0, 1, tzinfo=UTC)
    turns = [new_turn(tenant="sales", subject="alice", assistant="sales-assistant", model="m1", created_at=day1,
                      prompt_tokens=10, completion_tokens=5, cost_usd=0.5),
             new_turn(tenant="sales", subject="bob", assistant="deal-desk", model="m2", created_at=day2,
                      prompt_tokens=20, completion_tokens=5, cost_usd=0.25, cached=True),
             new_turn(tenant="finance", subject="fiona", model="m1", created_at=day2, prompt_tokens=99, cost_usd=9)]

    async def write_all():
        return await asyncio.gather(*(writer.write(t) for t in turns))

    ids = asyncio.run(write_all())
    writer.close()
    assert len(set(ids)) == 3
    report = UsageService(db=db).report(tenant="sales", start=date(2026, 11, 1), end=date(2026, 11, 30),
                                        group_by="day")
    assert [(g["key"], g["requests"]) for g in report["groups"]] == [("2026-11-02", 1), ("2026-11-03", 1)]
    assert report["totals"]["cost_usd"] == pytest.approx(0.75) and report["totals"]["cached"] == 1
    by_model = UsageService(db=db).report(tenant="sales", start=date(2026, 11, 1), end=date(2026, 11, 30),
                                          group_by="model")["groups"]
    assert {g["key"]: g["total_tokens"] for g in by_model} == {"m1": 15, "m2": 25}
    with db.session() as s:
        assert sum_usage(session=s, tenant="sales", since=day2) == (25, pytest.approx(0.25))
    db.engine.dispose()


def test_far_future_range_is_a_clear_422_and_the_last_supported_day_works(sql_url):
    from backend.settings import _normalise_db_url

    url = _normalise_db_url(sql_url)
    upgrade(url)
    db = Database(make_engine(url))
    service = UsageService(db=db)
    with pytest.raises(Invalid) as info:  # `to` = date.max has no next midnight (was a 500 OverflowError)
        service.report(tenant="sales", start=date(9999, 12, 31), end=date(9999, 12, 31), group_by="day")
    assert (info.value.status_code, info.value.code) == (422, "invalid_range")
    assert "`to` (9999-12-31) is out of range: the last day a report can cover is 9999-12-30" in info.value.message
    report = service.report(tenant="sales", start=date(9999, 12, 1), end=date(9999, 12, 30), group_by="day")
    assert (report["groups"], report["totals"]["requests"]) == ([], 0)
    db.engine.dispose()
