"""The writer of turn rows (UsageWriter): durable, batched and idempotent; its docstring states the design."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time as clock
from collections import deque
from typing import Any

from backend.db.engine import Database
from backend.db.repositories.turns import _COLUMNS, parse_row, row_values, turn_key_of
from backend.governance.outbox import Spool
from backend.governance.turn_sql import TurnSQL

log = logging.getLogger("atrium.usage")

_COLUMN_SET = frozenset(_COLUMNS)


class UsageWriter:
    """Durable, batched writes of turn rows: nothing the caller was answered for is lost, nothing counted twice.

    - Group commit: every model call writes its row, and a commit per row (SQLite: one writer, one fsync each) caps
      the whole API's throughput. One thread writes whatever has queued up meanwhile in one transaction — after
      waiting `linger_s` for more (ATRIUM_USAGE_LINGER_MS; 0: none), so that a batch holds more rows — as one
      multi-row statement per kind on a DBAPI connection it keeps (governance/turn_sql.py), and answers the
      batch's callers with one wake-up of their event loop.
    - A turn is written three ways, all keyed by its `turn_key` (unique): `start` when its model call starts
      (status `streaming`, fire and forget), `progress` now and then while it streams (the tokens so far; dropped
      if the database is away: the next one or the finish carries them), and `write` at the end (the final row,
      an upsert). A retried write whose commit was ambiguous (the connection dropped after COMMIT) finds its own
      row and changes nothing: exactly one row per turn.
    - Outbox: a batch the database refuses is retried once at once (on a new connection), then its starts and
      finishes go to an fsync'd local spool (governance/outbox.py) and the callers are answered anyway (`write`
      returns None for the id): the answer already delivered never fails for its usage row. The spool is drained
      by this thread with backoff (0.5 s doubling to 30 s) until the database takes it; a spool left by a process
      that died is drained by the next one started on the same data dir.
    - A non-streaming call's start (`start(..., defer=True)`) is held for `start_delay_s` (1 s): if the call
      finishes meanwhile, as most short ones do, its final row is its only write (no INSERT, no commit of its
      own); else it is written then, as `streaming` — within half a delay more (1.5 s): it is handed over
      without waking the thread, which looks every half delay when nothing else wakes it. Nothing reads its
      tokens so far (it has none until it finishes), so what a crash within that time loses is the row of a call
      that used nothing yet — as a crash loses what is still in this queue. A streaming call's start is written
      at once.
    """

    def __init__(self, *, db: Database, spool: Spool | None = None, max_batch: int = 256,
                 retry_s: tuple[float, float] = (0.5, 30.0), start_delay_s: float = 1.0,
                 linger_s: float = 0.0) -> None:
        self.db = db
        self.spool = spool
        self.max_batch = max_batch
        self.retry_s = retry_s
        self.start_delay_s = start_delay_s
        self.linger_s = linger_s
        self._sql = TurnSQL(db.engine.dialect)
        self._conn: Any = None  # the writer thread's DBAPI connection (from the engine's pool), kept between batches
        # turn_key -> (when it is due, its start) of deferred starts, in the order they are due (one delay for all);
        # the writer thread's alone
        self._later: dict[str, tuple[float, tuple]] = {}
        # (when it is due, its start) of deferred starts the writer thread has not taken yet: appended by the
        # loop without waking the thread (most are dropped unseen when their finish comes, in the same batch)
        self._deferred: deque[tuple[float, tuple]] = deque()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._running = False  # the thread runs: a put need not check (is_alive costs more than the put)
        self._lock = threading.Lock()
        self._backoff = retry_s[0]
        self._next_drain = 0.0
        self.spooled = 0  # rows that went through the spool (a figure for tests and logs)

    def start(self, turn: Any, *, defer: bool = False) -> None:
        """The turn's model call starts: its row as `streaming` (not awaited). `defer`: a non-streaming call, whose
        start is written only if it has not finished `start_delay_s` later (see the class's docstring)."""
        if defer:
            if not self._running:
                self._ensure_thread()
            self._deferred.append((clock.monotonic() + self.start_delay_s, ("defer", _snapshot(turn), None, None)))
        else:
            self._put(("start", _snapshot(turn), None, None))

    def progress(self, turn: Any) -> None:
        """The tokens streamed so far (not awaited; only a streaming row takes them)."""
        self._put(("progress", _snapshot(turn), None, None))

    async def write(self, turn: Any) -> int | None:
        """The turn's final row; its id, or None when the row went to the outbox (written later)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._put(("finish", _snapshot(turn), future, loop))
        turn_id = await future
        if turn_id is not None:
            turn.id = turn_id
        return turn_id

    def _put(self, item: tuple) -> None:
        if not self._running:
            self._ensure_thread()
        self._queue.put(item)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._running = True
                self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._running = False

    def _loop(self) -> None:
        self._drain(adopt_only=True)  # a stopped process's spool on the same data dir
        while True:
            try:
                first = self._queue.get(timeout=self._wait())
            except queue.Empty:  # a deferred start is due, or the spool's next drain
                first = _IDLE
            batch = [] if first is _IDLE or first is None else [first]
            stop = first is None
            if batch and self.linger_s > 0:  # a row to write: let more join its batch
                self._linger()
            while not stop and len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            batch = self._with_due_starts(batch, flush=stop)
            if batch:
                self._write(batch)
            if self._spool_pending() and clock.monotonic() >= self._next_drain:
                self._drain()
            if stop:
                self._drain()
                return

    def _linger(self) -> None:
        clock.sleep(self.linger_s)

    def _wait(self) -> float:
        """How long the queue may be waited on: until the first deferred start is due, or the spool's next drain,
        and at most half a delay (deferred starts come without waking the thread)."""
        due = [self._next_drain] if self._spool_pending() else []
        if self._later:
            due.append(next(iter(self._later.values()))[0])
        wait = max(0.05, self.start_delay_s / 2)
        return max(0.0, min(wait, min(due) - clock.monotonic())) if due else wait

    def _with_due_starts(self, batch: list[tuple], *, flush: bool) -> list[tuple]:
        """The batch to write: deferred starts put aside (dropped when their finish comes), those now due (all of
        them when the writer stops) written as starts; a progress brings its turn's deferred start with it."""
        out: list[tuple] = []
        deferred = self._deferred
        while deferred:  # in the order they are due (one delay for all)
            due, item = deferred.popleft()
            self._later[item[1]["turn_key"]] = (due, item)
        for item in batch:
            op, row = item[0], item[1]
            later = self._later.pop(row["turn_key"], None) if self._later else None
            if later is not None and op == "progress":  # the row must exist before its tokens so far
                out.append(("start", *later[1][1:]))
            out.append(item)  # a finish: the final row is the turn's only write
        now = clock.monotonic()
        while self._later:
            key, (due, item) = next(iter(self._later.items()))
            if due > now and not flush:
                break
            del self._later[key]
            out.append(("start", *item[1:]))
        return out

    def _spool_pending(self) -> bool:
        return self.spool is not None and self.spool.pending > 0

    def _apply(self, items: list[tuple[str, Any]]) -> dict[str, int]:
        """One transaction: the batch's rows (governance/turn_sql.py), committed; turn_key -> id of the finishes.
        A failure drops the connection (the next attempt takes a new one: a dropped connection is replaced)."""
        if self._conn is None:
            self._conn = self.db.engine.raw_connection()
        conn = self._conn
        try:
            ids = self._sql.apply(conn, items)
            conn.commit()
        except BaseException:
            self._conn = None
            try:
                conn.rollback()
            except Exception:  # noqa: S110 - the connection is gone: invalidated below, its work with it
                pass
            conn.invalidate()
            raise
        return ids

    def _apply_spooled(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        self._apply([(op, parse_row(row)) for op, row in items])  # dates come back from JSON as text

    def _write(self, batch: list[tuple]) -> None:
        items = [(op, row) for op, row, _, _ in batch]
        ids: dict[str, int] | None = None
        error: Exception | None = None
        for _attempt in range(2):  # a dropped connection is replaced on the second attempt
            try:
                ids = self._apply(items)
                break
            except Exception as exc:  # the database is away or refused: retried, then the outbox
                error = exc
                log.info("usage write failed: retrying", extra={"rows": len(items),
                                                                 "error": f"{type(exc).__name__}: {exc}"[:200]})
        if ids is None:
            durable = [(op, {c: row[c] for c in _COLUMNS}) for op, row in items if op != "progress"]
            if self.spool is None:
                log.error("usage write failed and no outbox is configured",
                          extra={"rows": len(durable), "error": f"{type(error).__name__}: {error}"[:300]})
                return _answer(batch, None, error)
            try:
                self.spool.append(durable)
            except OSError as exc:  # the disk too: the caller hears of it (its answer is not held back for it)
                log.exception("usage outbox: could not spool")
                return _answer(batch, None, exc)
            self.spooled += len(durable)
            log.warning("usage write failed: rows kept in the outbox, retried with backoff",
                        extra={"rows": len(durable), "error": f"{type(error).__name__}: {error}"[:300]})
            if self._next_drain <= clock.monotonic():
                self._next_drain = clock.monotonic() + self._backoff
        _answer(batch, ids or {}, None)

    def _drain(self, *, adopt_only: bool = False) -> None:
        if self.spool is None:
            return
        try:
            apply = self._apply_spooled
            done = self.spool.adopt(apply) if adopt_only else self.spool.drain(apply)
        except Exception as exc:  # still away: try again later, waiting longer
            self._next_drain = clock.monotonic() + self._backoff
            self._backoff = min(self.retry_s[1], self._backoff * 2)
            log.warning("usage outbox: the database still refuses the spooled rows", extra={
                "retry_in_s": round(self._next_drain - clock.monotonic(), 2),
                "error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        self._backoff = self.retry_s[0]
        if done:
            log.info("usage outbox drained", extra={"rows": done})

    def close(self, timeout: float = 10) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        if self._conn is not None and not (self._thread is not None and self._thread.is_alive()):
            self._conn.close()  # back to the pool
            self._conn = None
        if self.spool is not None:
            self.spool.close()


_IDLE = object()  # the queue had nothing before a deferred start or the spool's drain was due


def _snapshot(turn: Any) -> Any:
    """The turn's column values as they are now (the loop goes on changing the turn): a copy of its attributes,
    which hold every column for a turn made by new_turn or ChatTurn(...) — cheaper than reading each column."""
    values = turn.__dict__
    if not values.get("turn_key"):
        turn_key_of(turn)
    if _COLUMN_SET <= values.keys():
        return values.copy()
    return row_values(turn)  # a loaded row with expired attributes: read one by one


def _answer(batch: list[tuple], ids: dict[str, int] | None, exc: BaseException | None) -> None:
    """The batch's finishes answered: one wake-up per event loop, not one per row."""
    per_loop: dict[Any, list[tuple[asyncio.Future, int | None]]] = {}
    for op, row, future, loop in batch:
        if op == "finish":
            per_loop.setdefault(loop, []).append((future, None if ids is None else ids.get(row["turn_key"])))
    for loop, answers in per_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, answers, exc)
        except RuntimeError:  # the caller's event loop is closed: nobody is waiting
            pass


def _resolve(answers: list[tuple[asyncio.Future, int | None]], exc: BaseException | None) -> None:
    for future, value in answers:
        if future.done():  # the caller went away
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
