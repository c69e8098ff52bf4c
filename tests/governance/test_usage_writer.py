"""Group commit of usage rows: concurrent callers each get their own row id; every row is stored."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.models import ChatTurn
from backend.db.repositories.turns import row_values
from backend.governance.usage import UsageWriter


def test_concurrent_writes_get_their_own_ids(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    writer = UsageWriter(db=db, max_batch=16)

    async def main():
        turns = [ChatTurn(tenant="sales", subject=f"user{i}", cost_usd=i / 1000, chunk_ids=[f"c{i}"])
                 for i in range(100)]
        ids = await asyncio.gather(*(writer.write(t) for t in turns))
        return turns, ids

    turns, ids = asyncio.run(main())
    writer.close()
    assert len(set(ids)) == 100 and [t.id for t in turns] == ids
    with db.session() as s:
        rows = {r.id: r for r in s.exec(select(ChatTurn))}
    assert all(rows[t.id].subject == t.subject and rows[t.id].chunk_ids == t.chunk_ids for t in turns)


def test_a_failed_batch_is_reported_to_its_callers(tmp_path):
    db = Database(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))  # no tables: the INSERT fails
    writer = UsageWriter(db=db)

    async def main():
        return await asyncio.gather(writer.write(ChatTurn(tenant="sales", subject="a")),
                                    return_exceptions=True)

    (result,) = asyncio.run(main())
    writer.close()
    assert isinstance(result, Exception) and "chat_turn" in str(result)


def test_a_turn_started_and_finished_in_one_batch_is_its_final_row(tmp_path):
    """Its start (and progress) are not written on their own: the final row is what the batch leaves, exactly
    as if the streaming row had been written and overwritten; a turn only started in the batch stays streaming."""
    from backend.db.repositories.turns import row_values

    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    db = Database(make_engine(url))
    writer = UsageWriter(db=db)
    both = ChatTurn(tenant="sales", subject="a", status="streaming", prompt_tokens=5)
    started = row_values(both)
    streaming = row_values(ChatTurn(tenant="sales", subject="b", status="streaming", prompt_tokens=7))
    both.status, both.outcome, both.completion_tokens, both.cost_usd = "completed", "ok", 11, 0.25
    finished = row_values(both)
    progress = {**started, "completion_tokens": 3}
    ids = writer._apply([("start", started), ("start", streaming), ("progress", progress), ("finish", finished)])
    with db.session() as s:
        rows = {r.turn_key: r for r in s.exec(select(ChatTurn))}
    assert set(rows) == {started["turn_key"], streaming["turn_key"]}
    final = rows[started["turn_key"]]
    assert ids == {final.turn_key: final.id}
    assert (final.status, final.outcome, final.prompt_tokens, final.completion_tokens, final.cost_usd) == \
        ("completed", "ok", 5, 11, 0.25)
    assert (rows[streaming["turn_key"]].status, rows[streaming["turn_key"]].prompt_tokens) == ("streaming", 7)


def _recording(db: Database, **kwargs) -> tuple[UsageWriter, list[list[tuple[str, str]]]]:
    """A writer whose batches are recorded as [(op, turn_key)] (what each transaction was given)."""
    writer = UsageWriter(db=db, **kwargs)
    batches: list[list[tuple[str, str]]] = []
    apply = writer._apply

    def recorded(items):  # noqa: ANN001, ANN202
        batches.append([(op, row["turn_key"]) for op, row in items])
        return apply(items)

    writer._apply = recorded  # type: ignore[method-assign]
    return writer, batches


def _until(check, deadline_s: float = 30):  # noqa: ANN001, ANN202
    import time

    end = time.monotonic() + deadline_s
    while not (value := check()) and time.monotonic() < end:
        time.sleep(0.02)
    return value


def test_a_non_streaming_start_is_written_only_if_its_call_outlasts_the_delay(tmp_path):
    """A deferred start (a non-streaming call) whose finish comes first is never written: the final row is the turn's
    only write. One still running when the delay is over is written as `streaming`; a progress brings its start
    along; closing the writer writes the starts it still holds."""
    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    db = Database(make_engine(url))

    def rows() -> dict[str, ChatTurn]:
        with db.session() as s:
            return {r.turn_key: r for r in s.exec(select(ChatTurn))}

    writer, batches = _recording(db, start_delay_s=3600)
    quick = ChatTurn(tenant="sales", subject="a", status="streaming", prompt_tokens=5)
    writer.start(quick, defer=True)
    quick.status, quick.outcome, quick.completion_tokens = "completed", "ok", 9
    turn_id = asyncio.run(writer.write(quick))
    slow = ChatTurn(tenant="sales", subject="b", status="streaming", prompt_tokens=7)
    writer.start(slow, defer=True)
    slow.completion_tokens = 3
    writer.progress(slow)  # its row must exist for the tokens so far to land
    assert _until(lambda: (r := rows().get(slow.turn_key)) is not None and r.completion_tokens == 3)
    held = ChatTurn(tenant="sales", subject="c", status="streaming")
    writer.start(held, defer=True)
    writer.close()  # what it still holds is written
    stored = rows()
    assert (stored[quick.turn_key].id, stored[quick.turn_key].status, stored[quick.turn_key].completion_tokens) == \
        (turn_id, "completed", 9)
    assert ("start", quick.turn_key) not in [item for batch in batches for item in batch]
    assert (stored[slow.turn_key].status, stored[held.turn_key].status) == ("streaming", "streaming")

    writer, _ = _recording(db, start_delay_s=0.05)
    late = ChatTurn(tenant="sales", subject="d", status="streaming", prompt_tokens=4)
    writer.start(late, defer=True)  # nothing else comes: written when its delay is over
    assert _until(lambda: late.turn_key in rows())
    assert rows()[late.turn_key].status == "streaming"
    writer.close()


def _db(tmp_path) -> Database:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    return Database(make_engine(url))


def test_rows_arriving_while_the_writer_lingers_share_its_batch_and_each_caller_gets_its_id(tmp_path, monkeypatch):
    """With a linger, the writer waits (here a stand-in that lets three more callers queue their rows meanwhile)
    before taking the batch: the four rows go in one transaction, and each caller gets its own id."""
    db = _db(tmp_path)
    writer, batches = _recording(db, linger_s=0.004)
    turns = [ChatTurn(tenant="sales", subject=f"user{i}", prompt_tokens=i) for i in range(4)]
    slept: list[float] = []

    async def main():  # noqa: ANN202
        loop = asyncio.get_running_loop()
        more = [asyncio.ensure_future(writer.write(t)) for t in turns[1:]]  # not started until the loop runs

        def linger() -> None:  # the writer thread lingers: the other callers' rows arrive meanwhile
            slept.append(writer.linger_s)
            if len(slept) == 1:
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result()  # the loop ran the three puts

        monkeypatch.setattr(writer, "_linger", linger)
        first = await writer.write(turns[0])
        return [first, *await asyncio.gather(*more)]

    ids = asyncio.run(main())
    writer.close()
    assert slept[0] == 0.004
    assert batches[0] == [("finish", t.turn_key) for t in turns]
    assert len(set(ids)) == 4 and [t.id for t in turns] == ids
    with db.session() as s:
        stored = {r.id: r.prompt_tokens for r in s.exec(select(ChatTurn))}
    assert stored == {t.id: t.prompt_tokens for t in turns}


def test_no_linger_for_a_deferred_start_alone(tmp_path, monkeypatch):
    """A deferred start has nothing to write yet: it is handed over without waking the writer (not through its
    queue), and the writer does not wait for company on its account; closing writes it."""
    slept: list[bool] = []
    db = _db(tmp_path)
    writer = UsageWriter(db=db, linger_s=0.004, start_delay_s=3600)
    monkeypatch.setattr(writer, "_linger", lambda: slept.append(True))
    held = ChatTurn(tenant="sales", subject="a", status="streaming")
    writer.start(held, defer=True)
    assert writer._queue.qsize() == 0
    writer.close()
    assert slept == []
    with db.session() as s:
        assert [(r.turn_key, r.status) for r in s.exec(select(ChatTurn))] == [(held.turn_key, "streaming")]


def test_a_batch_with_a_row_the_database_refuses_keeps_every_row_in_the_outbox(tmp_path, monkeypatch):
    """One transaction per batch: a row the database refuses (here a tenant of None, NOT NULL) fails the batch
    (retried once), and then all its rows, the good ones too, go to the spool and their callers are answered
    (no id yet): none is lost, none is written half."""
    from backend.governance.outbox import Spool

    db = _db(tmp_path)
    spool = Spool(tmp_path / "outbox", "host:1:abc")
    writer = UsageWriter(db=db, spool=spool, retry_s=(3600, 3600), linger_s=1)
    # The batch: the writer lingers until all three rows are queued (the first is already taken).
    monkeypatch.setattr(writer, "_linger", lambda: _until(lambda: writer._queue.qsize() >= 2))
    good = [ChatTurn(tenant="sales", subject=f"user{i}") for i in range(2)]
    bad = ChatTurn(tenant="sales", subject="bad")
    bad.tenant = None

    items = [("finish", row_values(t)) for t in [good[0], bad, good[1]]]
    ids = writer._apply(items[::2])  # the good ones alone are written: the refusal is the bad row's
    assert set(ids) == {good[0].turn_key, good[1].turn_key}
    with db.session() as s:
        for r in s.exec(select(ChatTurn)):
            s.delete(r)
        s.commit()

    async def main():  # noqa: ANN202
        return await asyncio.gather(*(writer.write(t) for t in [good[0], bad, good[1]]))

    assert asyncio.run(main()) == [None, None, None]
    writer.close()
    with db.session() as s:
        assert list(s.exec(select(ChatTurn))) == []
    import json

    spooled = [json.loads(line)["row"]["turn_key"] for line in spool.path.read_text().splitlines()]
    assert sorted(spooled) == sorted(t.turn_key for t in [good[0], bad, good[1]])
