"""Usage per tenant: reports (totals by day, model, user or assistant over a date range), and the writer of the
turn rows they are made of — durable, batched and idempotent (UsageWriter, whose docstring states the design)."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from backend.db.engine import Database
from backend.db.repositories.turns import finish_turns, parse_row, progress_turns, row_values, start_turns
from backend.db.repositories.usage import GroupBy, downgrade_totals, usage_per_day_and_model, usage_totals
from backend.errors import Invalid
from backend.governance.allowances import LEVEL_OF
from backend.governance.outbox import Spool

log = logging.getLogger("atrium.usage")

MAX_RANGE_DAYS = 366


class UsageService:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def report(self, *, tenant: str, start: date | None, end: date | None, group_by: GroupBy) -> dict:
        """Totals for [start, end] (inclusive days, UTC); default: the current month to date."""
        start, end, since, until = _window(start, end)
        with self.db.session() as session:
            rows = usage_totals(session=session, tenant=tenant, since=since, until=until, group_by=group_by)
            downgrades = downgrade_totals(session=session, tenant=tenant, since=since, until=until)
        totals = {k: sum(r[k] for r in rows) for k in
                  ("requests", "internal_calls", "cached", "prompt_tokens", "completion_tokens", "total_tokens",
                   "downgraded")}
        totals["cost_usd"] = round(sum(r["cost_usd"] for r in rows), 8)
        for d in downgrades:  # the level whose budget was spent: the department's, a member's, an assistant's
            d["level"] = LEVEL_OF.get(d["reason"] or "")
        return {"tenant": tenant, "from": start.isoformat(), "to": end.isoformat(), "group_by": group_by,
                "groups": rows, "totals": totals, "downgrades": downgrades}

    def per_day_and_model(self, *, tenant: str, start: date, end: date) -> list[dict]:
        """report()'s figures per (day, model) over [start, end]: rows with `day`, `model` and the same keys."""
        _, _, since, until = _window(start, end)
        with self.db.session() as session:
            return usage_per_day_and_model(session=session, tenant=tenant, since=since, until=until)


def _window(start: date | None, end: date | None) -> tuple[date, date, datetime, datetime]:
    """(start, end, since, until) of a report: the inclusive UTC days checked, and the datetimes [since, until)."""
    today = datetime.now(UTC).date()
    end = end or today
    start = start or end.replace(day=1)
    if start > end:
        raise Invalid(f"`from` ({start}) is after `to` ({end})", code="invalid_range")
    if (end - start).days > MAX_RANGE_DAYS:
        raise Invalid(f"the range is limited to {MAX_RANGE_DAYS} days", code="invalid_range")
    if end >= date.max:  # the range ends at the next midnight, which date.max does not have
        raise Invalid(f"`to` ({end}) is out of range: the last day a report can cover is "
                      f"{date.max - timedelta(days=1)}", code="invalid_range")
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    return start, end, since, until


class UsageWriter:
    """Durable, batched writes of turn rows: nothing the caller was answered for is lost, nothing counted twice.

    - Group commit: every model call writes its row, and a commit per row (SQLite: one writer, one fsync each) caps
      the whole API's throughput. One thread writes whatever has queued up meanwhile in one transaction.
    - A turn is written three ways, all keyed by its `turn_key` (unique): `start` when its model call starts
      (status `streaming`, fire and forget), `progress` now and then while it streams (the tokens so far; dropped
      if the database is away: the next one or the finish carries them), and `write` at the end (the final row,
      an upsert). A retried write whose commit was ambiguous (the connection dropped after COMMIT) finds its own
      row and changes nothing: exactly one row per turn.
    - Outbox: a batch the database refuses is retried once at once (a dropped connection is replaced), then its
      starts and finishes go to an fsync'd local spool (governance/outbox.py) and the callers are answered
      anyway (`write` returns None for the id): the answer already delivered never fails for its usage row. The
      spool is drained by this thread with backoff (0.5 s doubling to 30 s) until the database takes it; a spool
      left by a process that died is drained by the next one started on the same data dir.
    - A non-streaming call's start (`start(..., defer=True)`) is held for `start_delay_s` (1 s): if the call
      finishes meanwhile, as most short ones do, its final row is its only write (no INSERT, no commit of its
      own); else it is written then, as `streaming`. Nothing reads its tokens so far (it has none until it
      finishes), so what a crash within that second loses is the row of a call that used nothing yet — as a
      crash loses what is still in this queue. A streaming call's start is written at once.
    """

    def __init__(self, *, db: Database, spool: Spool | None = None, max_batch: int = 256,
                 retry_s: tuple[float, float] = (0.5, 30.0), start_delay_s: float = 1.0) -> None:
        self.db = db
        self.spool = spool
        self.max_batch = max_batch
        self.retry_s = retry_s
        self.start_delay_s = start_delay_s
        # turn_key -> (when it is due, its start) of deferred starts, in the order they are due (one delay for all);
        # the writer thread's alone
        self._later: dict[str, tuple[float, tuple]] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._backoff = retry_s[0]
        self._next_drain = 0.0
        self.spooled = 0  # rows that went through the spool (a figure for tests and logs)

    def start(self, turn: Any, *, defer: bool = False) -> None:
        """The turn's model call starts: its row as `streaming` (not awaited). `defer`: a non-streaming call, whose
        start is written only if it has not finished `start_delay_s` later (see the class's docstring)."""
        self._put(("defer" if defer else "start", row_values(turn), None, None))

    def progress(self, turn: Any) -> None:
        """The tokens streamed so far (not awaited; only a streaming row takes them)."""
        self._put(("progress", row_values(turn), None, None))

    async def write(self, turn: Any) -> int | None:
        """The turn's final row; its id, or None when the row went to the outbox (written later)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        row = row_values(turn)
        self._put(("finish", row, future, loop))
        turn_id = await future
        if turn_id is not None:
            turn.id = turn_id
        return turn_id

    def _put(self, item: tuple) -> None:
        self._ensure_thread()
        self._queue.put(item)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        self._drain(adopt_only=True)  # a stopped process's spool on the same data dir
        while True:
            try:
                first = self._queue.get(timeout=self._wait())
            except queue.Empty:  # a deferred start is due, or the spool's next drain
                first = _IDLE
            batch = [] if first is _IDLE or first is None else [first]
            stop = first is None
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

    def _wait(self) -> float | None:
        """How long the queue may be waited on: until the first deferred start is due, or the spool's next drain."""
        due = [self._next_drain] if self._spool_pending() else []
        if self._later:
            due.append(next(iter(self._later.values()))[0])
        return max(0.0, min(due) - clock.monotonic()) if due else None

    def _with_due_starts(self, batch: list[tuple], *, flush: bool) -> list[tuple]:
        """The batch to write: deferred starts put aside (dropped when their finish comes), those now due (all of
        them when the writer stops) written as starts; a progress brings its turn's deferred start with it."""
        out: list[tuple] = []
        for item in batch:
            op, row = item[0], item[1]
            if op == "defer":
                self._later[row["turn_key"]] = (clock.monotonic() + self.start_delay_s, item)
                continue
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

    def _apply(self, items: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
        # A turn that starts and finishes within one batch is written once, as its final row: in one transaction
        # the start's INSERT would be overwritten before anyone could read it (the common case under load).
        finished = {row["turn_key"] for op, row in items if op == "finish"}
        progress: dict[str, dict[str, Any]] = {}
        for op, row in items:
            if op == "progress" and row["turn_key"] not in finished:
                progress[row["turn_key"]] = row  # the latest figures only
        with self.db.session() as session:
            start_turns(session=session, rows=[parse_row(r) for op, r in items
                                               if op == "start" and r["turn_key"] not in finished])
            progress_turns(session=session, rows=list(progress.values()))
            ids = finish_turns(session=session, rows=[parse_row(r) for op, r in items if op == "finish"])
            session.commit()
        return ids

    def _write(self, batch: list[tuple]) -> None:
        items = [(op, row) for op, row, _, _ in batch]
        ids: dict[str, int] | None = None
        error: Exception | None = None
        for _attempt in range(2):  # a dropped connection is replaced on the second attempt (pool_pre_ping)
            try:
                ids = self._apply(items)
                break
            except Exception as exc:  # the database is away or refused: retried, then the outbox
                error = exc
                log.info("usage write failed: retrying", extra={"rows": len(items),
                                                                 "error": f"{type(exc).__name__}: {exc}"[:200]})
        if ids is None:
            durable = [(op, row) for op, row in items if op != "progress"]
            if self.spool is None:
                log.error("usage write failed and no outbox is configured",
                          extra={"rows": len(durable), "error": f"{type(error).__name__}: {error}"[:300]})
                for op, _, future, loop in batch:
                    if op == "finish":
                        loop.call_soon_threadsafe(_resolve, future, None, error)
                return
            try:
                self.spool.append(durable)
            except OSError as exc:  # the disk too: the caller hears of it (its answer is not held back for it)
                log.exception("usage outbox: could not spool")
                for op, _, future, loop in batch:
                    if op == "finish":
                        loop.call_soon_threadsafe(_resolve, future, None, exc)
                return
            self.spooled += len(durable)
            log.warning("usage write failed: rows kept in the outbox, retried with backoff",
                        extra={"rows": len(durable), "error": f"{type(error).__name__}: {error}"[:300]})
            if self._next_drain <= clock.monotonic():
                self._next_drain = clock.monotonic() + self._backoff
        for op, row, future, loop in batch:
            if op == "finish":
                loop.call_soon_threadsafe(_resolve, future, (ids or {}).get(row["turn_key"]), None)

    def _drain(self, *, adopt_only: bool = False) -> None:
        if self.spool is None:
            return
        try:
            done = self.spool.adopt(self._apply) if adopt_only else self.spool.drain(self._apply)
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
        if self.spool is not None:
            self.spool.close()


_IDLE = object()  # the queue had nothing before a deferred start or the spool's drain was due


def _resolve(future: asyncio.Future, value: int | None, exc: BaseException | None) -> None:
    if future.done():  # the caller went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
