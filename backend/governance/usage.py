"""Usage reports per tenant: totals by day, model, user or assistant over a date range."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from datetime import UTC, date, datetime, time, timedelta

from backend.db.engine import Database
from backend.db.models import ChatTurn
from backend.db.repositories.usage import GroupBy, insert_turns, usage_totals
from backend.errors import Invalid

log = logging.getLogger("atrium.usage")

MAX_RANGE_DAYS = 366


class UsageService:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def report(self, *, tenant: str, start: date | None, end: date | None, group_by: GroupBy) -> dict:
        """Totals for [start, end] (inclusive days, UTC); default: the current month to date."""
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
        with self.db.session() as session:
            rows = usage_totals(session=session, tenant=tenant, since=since, until=until, group_by=group_by)
        totals = {k: sum(r[k] for r in rows) for k in
                  ("requests", "internal_calls", "cached", "prompt_tokens", "completion_tokens", "total_tokens")}
        totals["cost_usd"] = round(sum(r["cost_usd"] for r in rows), 8)
        return {"tenant": tenant, "from": start.isoformat(), "to": end.isoformat(), "group_by": group_by,
                "groups": rows, "totals": totals}


class UsageWriter:
    """Group commit for usage rows: every model call writes one, and a commit per row (SQLite: one writer,
    one fsync each) caps the whole API's throughput. Callers await their row's id; one thread writes
    whatever has queued up meanwhile in a single transaction. Latency stays one commit; throughput scales."""

    def __init__(self, *, db: Database, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def write(self, turn: ChatTurn) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._ensure_thread()
        self._queue.put((turn, future, loop))
        return await future

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                with self.db.session() as session:
                    ids = insert_turns(session=session, turns=[t for t, _, _ in batch])
                for (_, future, loop), turn_id in zip(batch, ids, strict=True):
                    loop.call_soon_threadsafe(_resolve, future, turn_id, None)
            except Exception as exc:  # the callers see it (and record nothing twice)
                log.exception("usage write failed")
                for _, future, loop in batch:
                    loop.call_soon_threadsafe(_resolve, future, None, exc)

    def close(self, timeout: float = 10) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)


def _resolve(future: asyncio.Future, value: int | None, exc: Exception | None) -> None:
    if future.done():  # the caller went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
