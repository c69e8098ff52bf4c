"""The usage writer's batch on the raw DBAPI connection: its turn rows in one multi-row statement per kind.

The same three writes as backend/db/repositories/turns.py (`start`: ON CONFLICT DO NOTHING; `progress`: only a
`streaming` row; `finish`: ON CONFLICT DO UPDATE where the tenant matches, RETURNING the ids), as SQL text built
once per dialect and row count, with the values converted by the columns' own SQLAlchemy bind processors (the
dates and the JSON list are stored exactly as the ORM stores them). Why not SQLAlchemy's execution: a session, its
transaction state machine and per-row parameter compilation were most of the writer thread's CPU for batches of a
few rows (bench/README.md, bench/gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import String, TypeDecorator
from sqlalchemy.engine import Dialect

from backend.db.models import ChatTurn
from backend.db.repositories.turns import _COLUMNS, _FINAL, _PROGRESS

ROWS_PER_STATEMENT = 100  # x 31 columns: far below SQLite's 32,766 and PostgreSQL's 65,535 parameters

Row = Mapping[str, Any]  # at least every column of _COLUMNS (a turn's attributes, or a spooled row)


class TurnSQL:
    """The statements of one dialect (SQLite or PostgreSQL) and how to run a batch on a DBAPI connection."""

    def __init__(self, dialect: Dialect) -> None:
        if dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"the usage writer supports SQLite and PostgreSQL, not {dialect.name}")
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        table = ChatTurn.__table__
        procs = {c.name: c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.columns}
        procs = {name: _spell_nul(p) if _is_text(table.c[name].type) else p for name, p in procs.items()}
        self._procs: list[tuple[str, Callable[[Any], Any] | None]] = [(c, procs[c]) for c in _COLUMNS]
        self._tuple = "(" + ", ".join([mark] * len(_COLUMNS)) + ")"
        cols = ", ".join(f'"{c}"' for c in _COLUMNS)
        self._insert = f'INSERT INTO {table.name} ({cols}) VALUES '
        self._start_tail = ' ON CONFLICT ("turn_key") DO NOTHING'
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in _FINAL)
        # A key is the server's (random_hex), never input; the tenant must match all the same (one tenant never
        # writes over another's row).
        self._finish_tail = (f' ON CONFLICT ("turn_key") DO UPDATE SET {sets} WHERE {table.name}."tenant" = '
                             f'excluded."tenant" RETURNING "id", "turn_key"')
        self._progress_procs = [(c, procs[c]) for c in _PROGRESS]
        self._progress = (f'UPDATE {table.name} SET ' + ", ".join(f'"{c}" = {mark}' for c in _PROGRESS)
                          + f' WHERE "turn_key" = {mark} AND "tenant" = {mark} AND "status" = \'streaming\'')
        self._sql: dict[tuple[str, int], str] = {}

    def _values(self, rows: list[Row]) -> list[Any]:
        params: list[Any] = []
        extend, procs = params.extend, self._procs
        for r in rows:
            extend([r[c] if p is None else p(r[c]) for c, p in procs])
        return params

    def _statement(self, kind: str, n: int) -> str:
        sql = self._sql.get((kind, n))
        if sql is None:
            tail = self._start_tail if kind == "start" else self._finish_tail
            sql = self._sql[(kind, n)] = self._insert + ", ".join([self._tuple] * n) + tail
        return sql

    def apply(self, conn: Any, items: list[tuple[str, Row]]) -> dict[str, int]:
        """Write a batch of (op, row) in the connection's transaction (not committed): turn_key -> id of the
        finished rows. A turn that starts and finishes within the batch is written once, as its final row (in one
        transaction the start's INSERT would be overwritten before anyone could read it); of several progresses
        of a turn the latest; of several finishes the last (the last word, as when written one by one)."""
        finishes: dict[str, Row] = {}
        for op, row in items:
            if op == "finish":
                finishes[row["turn_key"]] = row
        starts: list[Row] = []
        progress: dict[str, Row] = {}
        for op, row in items:
            if op == "start" and row["turn_key"] not in finishes:
                starts.append(row)
            elif op == "progress" and row["turn_key"] not in finishes:
                progress[row["turn_key"]] = row
        cur = conn.cursor()
        try:
            for i in range(0, len(starts), ROWS_PER_STATEMENT):
                chunk = starts[i:i + ROWS_PER_STATEMENT]
                cur.execute(self._statement("start", len(chunk)), self._values(chunk))
            if progress:
                cur.executemany(self._progress, [
                    [r[c] if p is None else p(r[c]) for c, p in self._progress_procs] + [r["turn_key"], r["tenant"]]
                    for r in progress.values()])
            ids: dict[str, int] = {}
            rows = list(finishes.values())
            for i in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[i:i + ROWS_PER_STATEMENT]
                cur.execute(self._statement("finish", len(chunk)), self._values(chunk))
                ids.update((str(key), int(turn_id)) for turn_id, key in cur.fetchall())
            return ids
        finally:
            cur.close()


def _is_text(kind: Any) -> bool:
    return isinstance(kind.impl if isinstance(kind, TypeDecorator) else kind, String)  # SQLModel's AutoString too


def _spell_nul(process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """A text column's values with NUL spelled out (`\\x00`), on both databases alike: PostgreSQL's text cannot hold
    NUL and refuses the statement — the whole batch, every caller's row with it, and then the outbox's retries
    forever. NUL comes with caller text (a provider's error message, a claim) and means nothing in a usage row."""
    def spelled(value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            value = value.replace("\x00", "\\x00")
        return value if process is None else process(value)

    return spelled
