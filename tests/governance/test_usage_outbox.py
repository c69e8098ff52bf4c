"""The usage writer's outbox: a row the database refuses is answered anyway, kept in an fsync'd spool and written
when the database takes it again — exactly once; a spool left by a dead process is written by the next one; a turn's
start, progress and end are one row."""

from __future__ import annotations

import asyncio
import json
import time

from sqlmodel import select

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.models import ChatTurn
from backend.db.repositories.turns import row_values
from backend.db.repositories.usage import new_turn
from backend.governance.outbox import Spool
from backend.governance.usage import UsageWriter


def _rows(db: Database) -> list[ChatTurn]:
    with db.session() as s:
        return list(s.exec(select(ChatTurn)))


def _poll(check, deadline_s: float = 30):  # noqa: ANN001, ANN202
    end = time.monotonic() + deadline_s
    while not (value := check()) and time.monotonic() < end:
        time.sleep(0.05)
    return value


def test_a_refused_write_is_answered_spooled_and_written_once_when_the_database_is_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'later.db'}"
    db = Database(make_engine(url))  # no tables yet: every INSERT fails, as with a database that is away
    spool = Spool(tmp_path / "outbox", "host:1:abc")
    writer = UsageWriter(db=db, spool=spool, retry_s=(0.05, 0.2))
    turn = new_turn(tenant="sales", subject="alice", prompt_tokens=12, completion_tokens=30, cost_usd=0.5)

    assert asyncio.run(writer.write(turn)) is None  # answered: the caller's answer is not held back
    lines = [json.loads(line) for line in spool.path.read_text().splitlines()]
    assert [(x["op"], x["row"]["turn_key"]) for x in lines] == [("finish", turn.turn_key)]
    assert writer.spooled == 1

    upgrade(url)  # the database is back
    assert _poll(lambda: spool.pending == 0), "the spool was not drained"
    (row,) = _rows(db)
    assert (row.turn_key, row.prompt_tokens, row.completion_tokens, row.cost_usd) == (turn.turn_key, 12, 30, 0.5)
    assert spool.path.read_text() == ""

    # The same turn again (a retry after an ambiguous commit): still one row, now with its id.
    assert asyncio.run(writer.write(turn)) == row.id
    writer.close()
    assert [r.id for r in _rows(db)] == [row.id]


def test_a_dead_process_spool_is_written_by_the_next_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    left = new_turn(tenant="finance", subject="fiona", completion_tokens=7)
    row = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row_values(left).items()}
    # A process that died (its lock went with it) left a start and a finish, and a line torn by the crash.
    (outbox / "other-host_9_dead.jsonl").write_text(
        json.dumps({"op": "start", "row": {**row, "status": "streaming"}}) + "\n"
        + json.dumps({"op": "finish", "row": row}) + "\n" + '{"op": "fin')
    writer = UsageWriter(db=db, spool=Spool(outbox, "host:2:new"))
    asyncio.run(writer.write(new_turn(tenant="sales", subject="alice")))  # the writer starts: it adopts the spool
    assert _poll(lambda: len(_rows(db)) == 2)
    writer.close()
    rows = {r.turn_key: r for r in _rows(db)}
    assert rows[left.turn_key].status == "completed" and rows[left.turn_key].completion_tokens == 7
    assert list(outbox.glob("*.jsonl")) == []


def test_start_progress_and_finish_are_one_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    writer = UsageWriter(db=db, spool=Spool(tmp_path / "outbox", "host:3:x"))
    turn = new_turn(tenant="sales", subject="alice", status="streaming", owner="host:3:x")

    async def main() -> int | None:
        writer.start(turn)
        turn.completion_tokens = 5
        writer.progress(turn)
        await asyncio.sleep(0)
        assert _poll(lambda: [(r.status, r.completion_tokens) for r in _rows(db)] == [("streaming", 5)])
        turn.status, turn.completion_tokens = "completed", 9
        return await writer.write(turn)

    turn_id = asyncio.run(main())
    writer.close()
    (row,) = _rows(db)
    assert (row.id, row.status, row.completion_tokens, row.owner) == (turn_id, "completed", 9, "host:3:x")


def test_a_spool_deleted_while_waiting_for_its_lock_is_neither_adopted_nor_written_to(tmp_path, monkeypatch):
    """Two interleavings a lock alone does not cover: an adopter that waited for a dead spool's lock while another
    adopter wrote and deleted it (and a live process made a new file of that name), and a process whose own new
    file was taken for a dead one's between its open and its lock."""
    from backend.governance import outbox as outbox_module

    real_flock = outbox_module.fcntl.flock
    directory = tmp_path / "outbox"
    directory.mkdir()
    dead = directory / "dead.jsonl"
    dead.write_text(json.dumps({"op": "finish", "row": {"turn_key": "k1"}}) + "\n")
    live = Spool(directory, "dead")  # a process of the same name that starts after the first adopter deleted it
    applied: list[list] = []

    def adopted_elsewhere_meanwhile(fd: int, op: int) -> None:
        if op & outbox_module.fcntl.LOCK_NB and dead.exists() and live._fd is None:
            dead.unlink()  # the first adopter wrote it and deleted it
            live.append([("finish", {"turn_key": "k2"})])  # the new file: locked by its live owner
        real_flock(fd, op)

    monkeypatch.setattr(outbox_module.fcntl, "flock", adopted_elsewhere_meanwhile)
    assert Spool(directory, "late-adopter").adopt(applied.append) == 0
    assert applied == [] and dead.exists()  # the live file was neither written again nor deleted
    live.close()

    # A process's own file deleted by an adopter between its open and its lock: it opens the path again.
    own = Spool(directory, "racer")
    calls = {"n": 0}

    def deleted_before_our_lock(fd: int, op: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            own.path.unlink()
        real_flock(fd, op)

    monkeypatch.setattr(outbox_module.fcntl, "flock", deleted_before_our_lock)
    own.append([("finish", {"turn_key": "k3"})])
    assert calls["n"] == 2 and [op for op, _ in outbox_module._read(own.path)] == ["finish"]
    monkeypatch.setattr(outbox_module.fcntl, "flock", real_flock)
    own.close()
