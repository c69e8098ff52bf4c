"""Fair turns at the in-process model: one generation at a time (llama.cpp contexts are not re-entrant), and
when several wait, the tenant served least recently goes next (its oldest request first).

A plain lock is neither FIFO nor fair: a tenant with 30 queued answers could take the model 30 times while another
tenant's first answer waits behind all of them. Here a tenant's second request waits behind every other tenant's
first: round-robin between the tenants waiting, FIFO within one tenant. Waiters are threads (generation runs in
the thread pool); one that is cancelled while waiting (its caller went away) leaves the queue without running.

The tenant of a call comes from `model_tenant`, a context variable LLMService sets for each call (LiteLLM's custom
provider interface has no parameter for it; the variable follows the call into LiteLLM's tasks).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

model_tenant: ContextVar[str] = ContextVar("atrium_model_tenant", default="")

_CANCEL_POLL_S = 0.05  # how soon a waiter whose caller went away notices (a threading.Event cannot wake a Condition)


class _Ticket:
    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False


class FairScheduler:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: dict[str, deque[_Ticket]] = {}  # tenant -> its waiting requests, oldest first
        self._since: dict[str, int] = {}  # tenant -> when it started waiting (ties between never-served tenants)
        self._served: dict[str, int] = {}  # tenant -> when it was last given the model
        self._clock = itertools.count()

    def acquire(self, tenant: str, cancelled: threading.Event | None = None) -> bool:
        """Wait for this tenant's turn; False (nothing held) if `cancelled` is set first."""
        with self._cond:
            if not self._busy and not self._waiting:
                self._busy = True
                self._served[tenant] = next(self._clock)
                return True
            ticket = _Ticket()
            queue = self._waiting.get(tenant)
            if queue is None:
                queue = self._waiting[tenant] = deque()
                self._since[tenant] = next(self._clock)
            queue.append(ticket)
            while not ticket.granted:
                if cancelled is not None and cancelled.is_set():
                    queue.remove(ticket)
                    if not queue:
                        del self._waiting[tenant], self._since[tenant]
                    return False
                self._cond.wait(_CANCEL_POLL_S if cancelled is not None else None)
            return True

    def release(self) -> None:
        """Hand the model to the waiting tenant served least recently (never served first, then longest waiting)."""
        with self._cond:
            if not self._waiting:
                self._busy = False
                return
            tenant = min(self._waiting, key=lambda t: (self._served.get(t, -1), self._since[t]))
            queue = self._waiting[tenant]
            ticket = queue.popleft()
            if not queue:
                del self._waiting[tenant], self._since[tenant]
            self._served[tenant] = next(self._clock)
            ticket.granted = True  # stays busy: handed over, never free in between for a newcomer to jump in
            self._cond.notify_all()

    @contextmanager
    def turn(self, tenant: str, cancelled: threading.Event | None = None) -> Iterator[bool]:
        """`with scheduler.turn(t, cancelled) as granted:` — granted is False when cancelled while waiting."""
        granted = self.acquire(tenant, cancelled)
        try:
            yield granted
        finally:
            if granted:
                self.release()

    def waiting(self) -> dict[str, int]:
        """Requests waiting, per tenant (for tests and the bench)."""
        with self._cond:
            return {t: len(q) for t, q in self._waiting.items()}
