"""This process's lease: a heartbeat in the database, and the reaping of turns whose process died.

Every process that answers (each `atrium serve` replica) has an owner id (host:pid:nonce), written on the rows of
its turns in progress (`streaming`). A thread beats every lease/3 (`process_lease.beat`, by the database's clock,
so hosts with different clocks agree) and then marks `interrupted` every streaming turn whose owner has not beaten
for a whole lease (`reap_turns`: one UPDATE .. RETURNING, so two survivors never mark the same turn) — a living
process's turns are never touched, whatever replica looks. The tokens those turns had streamed (the last progress
write) are then charged to the tenant's quota counters (`on_reaped`), since their reservations lapsed with their
process. At start the first beat is written before anything is answered, and the first reaping runs at once: a
restarted single replica cleans up after its previous self once that one's lease is over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from backend.db.engine import Database
from backend.db.repositories.turns import beat, end_lease, prune_leases, reap_turns

log = logging.getLogger("atrium.leases")

FORGET_AFTER_LEASES = 100  # a heartbeat row this many leases old belongs to a process long gone


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ProcessLease:
    def __init__(self, *, db: Database, owner: str, lease_s: float,
                 on_reaped: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.db = db
        self.owner = owner
        self.lease_s = lease_s
        self.on_reaped = on_reaped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reaped = 0  # turns this process marked interrupted (for logs and tests)
        self._ticks = 0

    def start(self) -> None:
        self._beat()  # before the first turn: a turn of ours is never seen without a live owner
        self._thread = threading.Thread(target=self._run, name="process-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = 0.0  # the first reaping at once
        while not self._stop.wait(wait):
            ok = self._beat() and self.reap() is not None
            wait = self.lease_s / 3 if ok else min(1.0, self.lease_s / 3)  # the database away: retry soon

    def _beat(self) -> bool:
        try:
            with self.db.session() as session:
                beat(session=session, owner=self.owner, host=socket.gethostname(), pid=os.getpid())
            return True
        except Exception as exc:  # the database is away: the lease is long enough for a retry or two
            log.warning("heartbeat failed", extra={"owner": self.owner, "error": f"{type(exc).__name__}: {exc}"[:300]})
            return False

    def reap(self) -> list[dict[str, Any]] | None:
        """Mark the turns of dead processes interrupted and charge what they used; None when the database is away."""
        try:
            with self.db.session() as session:
                rows = reap_turns(session=session, lease_s=self.lease_s, exclude_owner=self.owner,
                                  reason="the process answering it stopped before the answer was complete")
                self._ticks += 1
                if self._ticks % 50 == 1:
                    prune_leases(session=session, older_than_s=self.lease_s * FORGET_AFTER_LEASES)
        except Exception as exc:
            log.warning("reaping interrupted turns failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            return None
        if rows:
            self.reaped += len(rows)
            log.warning("turns of a stopped process marked interrupted", extra={
                "turns": len(rows), "tenants": sorted({r["tenant"] for r in rows})})
            if self.on_reaped is not None:
                try:
                    self.on_reaped(rows)
                except Exception:  # the counters are re-seeded from SQL (which has the rows) at the next period
                    log.exception("could not charge interrupted turns to their quotas")
        return rows

    def close(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            with self.db.session() as session:
                end_lease(session=session, owner=self.owner)  # whatever is left streaming is reaped at once
        except Exception:  # pragma: no cover - best effort at shutdown
            log.warning("could not end this process's lease", exc_info=True)

