"""Group commit of usage rows: concurrent callers each get their own row id; every row is stored."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.db.models import ChatTurn
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
