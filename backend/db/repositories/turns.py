"""Durable turns: a chat turn's row from the moment its model call starts to its end, written idempotently.

Every write is keyed by the turn's `turn_key` (unique), so an outbox that retries a write whose commit was
ambiguous (the connection dropped after COMMIT was sent) never makes a second row:
- `start_turns`: the row as `streaming` (ON CONFLICT DO NOTHING: a finished row is never re-opened);
- `progress_turns`: the tokens streamed so far, only while the row is still `streaming`;
- `finish_turns`: the final row (ON CONFLICT DO UPDATE: the last word, whatever was written before).
`reap_turns` marks `interrupted` the streaming turns whose owner process stopped beating (process_lease), and
`beat`/`prune_leases` keep those heartbeats, all by the database's clock (several hosts, one clock).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, bindparam, delete, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from backend.db.models import ChatTurn, ProcessLease, utcnow
from backend.ids import random_hex

_COLUMNS = [c.name for c in ChatTurn.__table__.columns if c.name != "id"]
# What a finish may change: everything but the identity of the row and when it started.
_FINAL = [c for c in _COLUMNS if c not in ("turn_key", "created_at")]
_PROGRESS = ("prompt_tokens", "completion_tokens", "cost_usd", "model", "updated_at")
_STATEMENTS: dict[tuple[str, str], Any] = {}  # (dialect, start | progress | finish) -> its statement (_statement)


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def db_epoch(session: Session) -> Any:
    """Now, in epoch seconds, by the database's clock (not this host's)."""
    if session.get_bind().dialect.name == "postgresql":
        return literal_column("extract(epoch from clock_timestamp())", Float)
    return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)


def turn_key_of(turn: Any) -> str:
    """The turn's idempotency key, given to it here if it has none yet (and kept)."""
    if not getattr(turn, "turn_key", None):
        turn.turn_key = random_hex()  # unique, not secret (backend/ids.py)
    return str(turn.turn_key)


def row_values(turn: Any) -> dict[str, Any]:
    """A turn's column values; a turn without an idempotency key gets one here (and keeps it)."""
    turn_key_of(turn)
    return {c: getattr(turn, c) for c in _COLUMNS}


def _statement(session: Session, kind: str) -> Any:
    """The dialect's `start`, `progress` or `finish` statement, built once: every batch of the usage writer runs
    them. On the table, not the ORM entity, and through the session's connection: the ORM's bulk-insert path
    (per-row attribute expansion) and a fresh `excluded` column collection per call were most of the writer
    thread's CPU (bench/gateway: ~0.9 ms of CPU per chat completion, for a few rows per batch)."""
    dialect = session.get_bind().dialect.name
    stmt = _STATEMENTS.get((dialect, kind))
    if stmt is None:
        table = ChatTurn.__table__
        if kind == "start":
            stmt = _insert(session)(table).on_conflict_do_nothing(index_elements=["turn_key"])
        elif kind == "progress":
            stmt = (update(table)
                    .where(table.c.turn_key == bindparam("k"), table.c.tenant == bindparam("t"),
                           table.c.status == "streaming")
                    .values({c: bindparam(f"v_{c}") for c in _PROGRESS}))
        else:
            ins = _insert(session)(table)
            # A key is the server's (random_hex), never input; the tenant must match all the same (one tenant
            # never writes over another's row).
            stmt = ins.on_conflict_do_update(index_elements=["turn_key"], set_={c: ins.excluded[c] for c in _FINAL},
                                             where=table.c.tenant == ins.excluded.tenant
                                             ).returning(table.c.id, table.c.turn_key)
        _STATEMENTS[(dialect, kind)] = stmt
    return stmt


def start_turns(*, session: Session, rows: list[dict[str, Any]]) -> None:
    """Rows of turns whose model call starts (status `streaming`); a turn already written is left as it is.
    No commit: the caller's transaction (the outbox's batch) commits."""
    if rows:
        session.connection().execute(_statement(session, "start"), rows)


def progress_turns(*, session: Session, rows: list[dict[str, Any]]) -> None:
    """The tokens streamed so far, on rows that are still streaming (a finished row keeps its final figures)."""
    if not rows:
        return
    params = [{"k": r["turn_key"], "t": r["tenant"], **{f"v_{c}": r[c] for c in _PROGRESS}} for r in rows]
    session.connection().execute(_statement(session, "progress"), params)


def finish_turns(*, session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """The final rows (inserted, or overwriting what was written before under the same turn_key): turn_key -> id.
    No commit (the caller's batch commits)."""
    if not rows:
        return {}
    return {key: int(turn_id) for turn_id, key in session.connection().execute(_statement(session, "finish"), rows)}


def reap_turns(*, session: Session, lease_s: float, exclude_owner: str | None,
               reason: str) -> list[dict[str, Any]]:
    """Mark `interrupted` the streaming turns of every tenant whose owner's heartbeat is older than `lease_s`
    (or that have none); returns what each one had used (tenant, created_at, tokens, cost) so that the quota
    counters can be charged. Several processes may run it at once: a row is marked (and returned) by one only.
    Not tenant-scoped on purpose: it is the platform's own bookkeeping, no caller's data leaves it."""
    live = select(ProcessLease.owner).where(ProcessLease.beat >= db_epoch(session) - lease_s)
    table = ChatTurn.__table__
    cond = [table.c.status == "streaming", or_(table.c.owner.is_(None), table.c.owner.not_in(live))]
    if exclude_owner is not None:
        cond.append(table.c.owner != exclude_owner)
    stmt = (update(table).where(*cond)
            .values(status="interrupted", outcome="interrupted", error=reason, updated_at=utcnow())
            .returning(table.c.id, table.c.turn_key, table.c.tenant, table.c.created_at, table.c.prompt_tokens,
                       table.c.completion_tokens, table.c.cost_usd, table.c.subject, table.c.assistant))
    rows = [dict(r) for r in session.execute(stmt).mappings()]
    session.commit()
    return rows


def beat(*, session: Session, owner: str, host: str, pid: int) -> float:
    """This process is alive (now, by the database's clock); returns that time."""
    now = float(session.execute(select(db_epoch(session))).scalar_one())
    stmt = _insert(session)(ProcessLease).values(owner=owner, host=host, pid=pid, beat=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["owner"], set_={"beat": now}))
    session.commit()
    return now


def prune_leases(*, session: Session, older_than_s: float) -> int:
    """Forget heartbeats of processes gone for a long time (their turns were reaped long ago)."""
    result = session.execute(delete(ProcessLease).where(ProcessLease.beat < db_epoch(session) - older_than_s))
    session.commit()
    return int(result.rowcount or 0)


def end_lease(*, session: Session, owner: str) -> None:
    """A process that stops cleanly: its heartbeat goes, so its leftovers (if any) are reaped at once."""
    session.execute(delete(ProcessLease).where(ProcessLease.owner == owner))
    session.commit()


def turn_status(*, session: Session, tenant: str, turn_key: str) -> dict[str, Any] | None:
    """A tenant's turn by its key (status, tokens): None for another tenant's."""
    row = session.execute(select(ChatTurn.__table__).where(ChatTurn.__table__.c.turn_key == turn_key,
                                                           ChatTurn.__table__.c.tenant == tenant)).mappings().first()
    return dict(row) if row is not None else None


def parse_row(data: dict[str, Any]) -> dict[str, Any]:
    """A row as the outbox's spool stored it (JSON) back into column values."""
    out = dict(data)
    for name in ("created_at", "updated_at"):
        if isinstance(out.get(name), str):
            out[name] = datetime.fromisoformat(out[name])
    return out
