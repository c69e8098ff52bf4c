"""backend/db/repositories/turns.py on SQLite and PostgreSQL: a turn's writes are idempotent by its key (a retried
finish makes no second row, a late start or progress never re-opens a finished turn), a write for tenant B never
changes tenant A's row even with A's key, and only the turns of a process that stopped beating are reaped."""

from __future__ import annotations

import time

from sqlalchemy import select, update

from backend.db.models import ChatTurn, ProcessLease
from backend.db.repositories import turns as repo
from backend.db.repositories.usage import new_turn
from tests.db.tenancy import A, B, assert_all_covered, rows_of

UNSCOPED = {
    "db_epoch": "the database's clock: no data",
    "row_values": "a record's column values in memory (no database)",
    "turn_key_of": "a record's idempotency key in memory (no database)",
    "parse_row": "a spooled row's JSON back into values in memory (no database)",
    "beat": "a process's heartbeat: platform bookkeeping, no tenant data",
    "prune_leases": "forgets old heartbeats: platform bookkeeping, no tenant data",
    "end_lease": "removes this process's heartbeat: platform bookkeeping, no tenant data",
    "reap_turns": "marks every tenant's turns of dead processes (the platform's own bookkeeping; tested below)",
}


def _row(tenant: str, **kw: object) -> dict:
    return repo.row_values(new_turn(tenant=tenant, subject="carol", assistant="helper", model="m", tier="fast", **kw))


def _all(db) -> list[dict]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(ChatTurn.__table__)).mappings()]


def test_every_function_is_tested_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_start_turns(db):
    row = _row(A, status="streaming", owner="p1")
    with db.session() as s:
        repo.start_turns(session=s, rows=[row])
        repo.start_turns(session=s, rows=[row])  # a retry after an ambiguous commit: still one row
        s.commit()
    (stored,) = _all(db)
    assert (stored["status"], stored["owner"], stored["turn_key"]) == ("streaming", "p1", row["turn_key"])


def test_progress_turns(db):
    a, b = _row(A, status="streaming"), _row(B, status="streaming")
    with db.session() as s:
        repo.start_turns(session=s, rows=[a, b])
        s.commit()
    before = rows_of(db, A)
    with db.session() as s:  # tenant B's call with A's key changes nothing of A's
        repo.progress_turns(session=s, rows=[{**a, "tenant": B, "completion_tokens": 99}])
        repo.progress_turns(session=s, rows=[{**b, "completion_tokens": 42}])
        s.commit()
    assert rows_of(db, A) == before
    assert rows_of(db, B)["chat_turn"][0]["completion_tokens"] == 42


def test_finish_turns(db):
    a = _row(A, status="streaming")
    with db.session() as s:
        repo.start_turns(session=s, rows=[a])
        s.commit()
    done = {**a, "status": "completed", "prompt_tokens": 10, "completion_tokens": 20}
    with db.session() as s:
        first = repo.finish_turns(session=s, rows=[done])
        s.commit()
    with db.session() as s:  # the outbox's retry of the same finish: same row, same id
        again = repo.finish_turns(session=s, rows=[done])
        s.commit()
    assert first == again and list(first) == [a["turn_key"]]
    before = rows_of(db, A)
    with db.session() as s:  # B with A's key: A's row stays A's
        repo.finish_turns(session=s, rows=[{**done, "tenant": B, "completion_tokens": 1}])
        repo.start_turns(session=s, rows=[{**a, "status": "streaming"}])  # a late start: no re-opening
        repo.progress_turns(session=s, rows=[{**a, "completion_tokens": 5}])  # a late progress: not taken
        s.commit()
    assert rows_of(db, A) == before
    (stored,) = _all(db)
    assert (stored["status"], stored["prompt_tokens"], stored["completion_tokens"]) == ("completed", 10, 20)


def test_turn_status(db):
    a = _row(A)
    with db.session() as s:
        repo.finish_turns(session=s, rows=[a])
        s.commit()
    with db.session() as s:
        assert repo.turn_status(session=s, tenant=A, turn_key=a["turn_key"])["tenant"] == A
        assert repo.turn_status(session=s, tenant=B, turn_key=a["turn_key"]) is None


def test_reap_marks_only_the_turns_of_processes_that_stopped_beating(db):
    with db.session() as s:
        repo.beat(session=s, owner="alive", host="h", pid=1)
        repo.beat(session=s, owner="dead", host="h", pid=2)
        s.execute(update(ProcessLease).where(ProcessLease.owner == "dead")
                  .values(beat=ProcessLease.beat - 3600))  # its last beat an hour ago
        s.commit()
    rows = [_row(A, status="streaming", owner="alive", completion_tokens=5),
            _row(B, status="streaming", owner="dead", completion_tokens=7),
            _row(A, status="streaming", owner="never-beat", completion_tokens=9),
            _row(A, status="streaming", owner="me", completion_tokens=11)]
    with db.session() as s:
        repo.start_turns(session=s, rows=rows)
        s.commit()
    with db.session() as s:
        reaped = repo.reap_turns(session=s, lease_s=60, exclude_owner="me", reason="gone")
    with db.session() as s:
        assert repo.reap_turns(session=s, lease_s=60, exclude_owner="me", reason="gone") == []  # once only
    assert sorted((r["tenant"], r["completion_tokens"]) for r in reaped) == sorted([(A, 9), (B, 7)])
    status = {r["owner"]: (r["status"], r["outcome"]) for r in _all(db)}
    assert status == {"alive": ("streaming", "ok"), "dead": ("interrupted", "interrupted"),
                      "never-beat": ("interrupted", "interrupted"), "me": ("streaming", "ok")}
    with db.session() as s:  # the forgotten heartbeat goes; the living one stays
        assert repo.prune_leases(session=s, older_than_s=600) == 1
        repo.end_lease(session=s, owner="alive")
        assert s.execute(select(ProcessLease)).all() == []


def test_the_heartbeat_uses_the_databases_clock(db):
    with db.session() as s:
        now = repo.beat(session=s, owner="p", host="h", pid=1)
    assert abs(now - time.time()) < 300  # the same clock as this host, give or take (not a timing assertion)
