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


def test_the_writers_statements_store_what_the_repositorys_store(sql_url):
    """The usage writer's SQL on the DBAPI connection (governance/turn_sql.py) against the repository's SQLAlchemy
    statements (db/repositories/turns.py): the same values stored, to the text of a date and the JSON of a list;
    a start, a progress and a finish each; a tenant never overwrites another's row; a batch longer than one
    statement takes; of two finishes of one turn in a batch the last is the row."""
    from sqlalchemy import text

    from backend.db.repositories.turns import finish_turns, progress_turns, row_values, start_turns
    from backend.settings import _normalise_db_url

    url = _normalise_db_url(sql_url)
    upgrade(url)
    db = Database(make_engine(url))
    writer = UsageWriter(db=db)
    created = datetime(2026, 11, 2, 23, 59, 1, 123456, tzinfo=UTC)
    fields = dict(tenant="sales", subject="alice", assistant="a1", model="m1", tier="smart", created_at=created,
                  updated_at=created, prompt_tokens=10, cost_usd=0.5, cached=True, grounding=0.75,
                  chunk_ids=["c1", "c2"], status="streaming", owner="host:1:x", answer_mode="grounded")
    ours, theirs = new_turn(**fields), new_turn(**fields)
    with db.session() as s:
        start_turns(session=s, rows=[row_values(theirs)])
        s.commit()
    writer._apply([("start", row_values(ours))])
    for t in (ours, theirs):
        t.completion_tokens, t.model = 7, "m2"
    with db.session() as s:
        progress_turns(session=s, rows=[row_values(theirs)])
        s.commit()
    writer._apply([("progress", row_values(ours))])

    def stored() -> dict[str, dict]:
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM chat_turn")).mappings()
            return {r["turn_key"]: {k: v for k, v in r.items() if k not in ("id", "turn_key")} for r in rows}

    rows = stored()
    assert rows[ours.turn_key] == rows[theirs.turn_key] and rows[ours.turn_key]["completion_tokens"] == 7
    for t in (ours, theirs):
        t.status, t.outcome, t.completion_tokens, t.latency_ms, t.error = "completed", "ok", 9, 12, "é ✓"
    with db.session() as s:
        their_id = finish_turns(session=s, rows=[row_values(theirs)])[theirs.turn_key]
        s.commit()
    ids = writer._apply([("finish", row_values(ours))])
    rows = stored()
    assert rows[ours.turn_key] == rows[theirs.turn_key] and rows[ours.turn_key]["status"] == "completed"
    assert ids[ours.turn_key] not in (None, their_id)

    assert writer._apply([("finish", {**row_values(ours), "tenant": "finance", "subject": "x"})]) == {}
    assert stored()[ours.turn_key] == rows[ours.turn_key]  # another tenant's key: not written over

    many = [new_turn(tenant="sales", subject=f"u{i}", prompt_tokens=i) for i in range(250)]
    twice = [("finish", {**row_values(many[0]), "prompt_tokens": 1000})]
    ids = writer._apply([("finish", row_values(t)) for t in many] + twice)
    assert len(set(ids.values())) == 250 and set(ids) == {t.turn_key for t in many}
    rows = stored()
    assert [rows[t.turn_key]["prompt_tokens"] for t in many] == [1000, *range(1, 250)]
    writer.close()
    db.engine.dispose()


def test_a_nul_in_caller_text_is_spelled_out_and_the_batch_is_written(sql_url):
    """PostgreSQL's text cannot hold NUL: one row carrying it (a provider's error message, a claim) failed the whole
    batch, its neighbours' rows with it, and then every retry of the outbox. Spelled out as `\\x00`, on both."""
    from sqlmodel import select

    from backend.db.models import ChatTurn
    from backend.settings import _normalise_db_url

    url = _normalise_db_url(sql_url)
    upgrade(url)
    db = Database(make_engine(url))
    writer = UsageWriter(db=db, linger_s=0.05)  # the rows share one batch
    turns = [new_turn(tenant="sales", subject="alice", model="m1", prompt_tokens=1),
             new_turn(tenant="sales", subject="bob\x00", model="m1", prompt_tokens=2, outcome="error",
                      error="provider said \x00 and stopped"),
             new_turn(tenant="sales", subject="carol", model="m1", prompt_tokens=3)]

    async def write_all():
        return await asyncio.gather(*(writer.write(t) for t in turns))

    ids = asyncio.run(write_all())
    writer.close()
    assert None not in ids and len(set(ids)) == 3
    with db.session() as s:
        stored = {r.prompt_tokens: (r.subject, r.error) for r in s.exec(select(ChatTurn))}
    assert stored == {1: ("alice", None), 2: ("bob\\x00", "provider said \\x00 and stopped"), 3: ("carol", None)}
    db.engine.dispose()
