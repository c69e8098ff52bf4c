"""The in-process limits backend (one replica): every admission under one lock (ratelimit.py)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

from backend.governance.ratelimit_types import Charge, Decision, Reservation, Window, hold_member


class _Holds:
    """One counter's holds (member -> (amount, lease end)) and their total, kept as holds come and go: an admission
    reads it for every counter it reserves on, and summing every answer in progress each time is what it would cost
    otherwise. They are summed again (lapsed ones purged) only once a lease may have lapsed: `lapse` is never later
    than the earliest lease end (a renewal or a release may leave it earlier: then one sum more, no harm)."""

    __slots__ = ("leases", "lapse", "total")

    def __init__(self) -> None:
        self.leases: dict[str, tuple[int, float]] = {}
        self.total = 0
        self.lapse = math.inf

    def add(self, member: str, amount: int, until: float) -> None:
        self.drop(member)
        self.leases[member] = (amount, until)
        self.total += amount
        self.lapse = min(self.lapse, until)

    def drop(self, member: str | None) -> None:
        item = self.leases.pop(member, None) if member is not None else None
        if item is not None:
            self.total -= item[0]

    def renew(self, member: str, until: float) -> None:
        item = self.leases.get(member)
        if item is not None:  # a hold already purged stays released
            self.leases[member] = (item[0], until)
            self.lapse = min(self.lapse, until)

    def held(self, now: float) -> int:
        if now < self.lapse:
            return self.total
        total, lapse, lapsed = 0, math.inf, None
        for member, (amount, until) in self.leases.items():
            if until > now:
                total += amount
                lapse = min(lapse, until)
            else:
                lapsed = lapsed or []
                lapsed.append(member)
        for member in lapsed or ():
            del self.leases[member]  # a lease that nobody renewed: its process is gone
        self.total, self.lapse = total, lapse
        return total


_NONE = _Holds()  # the holds of a counter nobody reserved on (never changed)


class MemoryLimits:
    """Single-process backend (the embedded default)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires_at)
        self._holds: dict[str, _Holds] = {}  # key -> its holds (member -> (amount, lease_until))
        self._marks: dict[str, tuple[dict[str, int], float]] = {}  # turn mark -> (unit -> charged, expires_at)

    def _counter(self, key: str, now: float) -> int | None:
        item = self._counters.get(key)
        if item is None or item[1] <= now:
            self._counters.pop(key, None)
            return None
        return item[0]

    def _held(self, key: str, now: float) -> int:
        holds = self._holds.get(key)
        return holds.held(now) if holds is not None else 0

    def _admit(self, windows: list[Window], reservations: list[Reservation], hold: str,
               lease_s: float) -> Decision:
        with self._lock:
            now = self._clock()
            for w in windows:
                hits = self._hits.setdefault(w.key, deque())
                while hits and hits[0] <= now - w.window_s:
                    hits.popleft()
                if len(hits) >= w.limit:
                    return Decision(False, w.name, max(0.001, hits[0] + w.window_s - now))
            values: dict[str, int] = {}
            held: dict[str, int] = {}
            for r in reservations:
                value = self._counter(r.key, now)
                if value is None:
                    value = int(r.seed())
                    self._counters[r.key] = (value, now + r.ttl_s)
                held[r.key] = self._held(r.key, now)
                if value + held[r.key] + r.amount > r.limit:
                    return Decision(False, r.name, 0.0, {r.key: value}, {r.key: held[r.key]})
                values[r.key] = value
            for w in windows:
                self._hits[w.key].append(now)
            for r in reservations:
                self._counters[r.key] = (values[r.key], now + r.ttl_s)
                if r.amount > 0:
                    holds = self._holds.get(r.key) or self._holds.setdefault(r.key, _Holds())
                    holds.add(hold_member(hold, r.amount), r.amount, now + lease_s)
            return Decision(True, used=values, held=held)

    async def admit(self, windows: list[Window], reservations: list[Reservation], *, hold: str = "",
                    lease_s: float = 60.0) -> Decision:
        return self._admit(windows, reservations, hold or uuid.uuid4().hex, lease_s)

    async def settle(self, key: str, member: str, actual: int, ttl_s: int) -> None:
        with self._lock:
            self._holds.get(key, _NONE).drop(member)
        self.adjust_sync(key, actual, ttl_s)

    async def settle_many(self, items: list[tuple[str, str, int, int]]) -> None:
        """(key, hold member, actual, ttl_s) for every level of one call, under one lock (no half-settled call)."""
        with self._lock:
            now = self._clock()
            for key, member, actual, ttl_s in items:
                self._holds.get(key, _NONE).drop(member)
                value = self._counter(key, now)
                if value is not None:
                    self._counters[key] = (max(0, value + actual), now + ttl_s)

    async def charge_once(self, mark: str, items: list[Charge], mark_ttl_s: int) -> None:
        self.charge_once_sync(mark, items, mark_ttl_s)

    def charge_once_sync(self, mark: str, items: list[Charge], mark_ttl_s: int) -> None:
        """Counts what a turn used once, whoever charges it (its process settling, a survivor reaping it): each
        counter gets only what exceeds what was already charged for the turn under `mark`."""
        with self._lock:
            now = self._clock()
            charged, expires = self._marks.get(mark, ({}, 0.0))
            charged = dict(charged) if expires > now else {}
            delta: dict[str, int] = {}
            for c in items:
                if c.unit not in delta:
                    delta[c.unit] = max(0, c.amount - charged.get(c.unit, 0))
                    charged[c.unit] = max(charged.get(c.unit, 0), c.amount)
            self._marks[mark] = (charged, now + mark_ttl_s)
            for c in items:
                self._holds.get(c.key, _NONE).drop(c.member)
                value = self._counter(c.key, now)
                if value is not None:  # a vanished counter is re-seeded from SQL, which has the real figure
                    self._counters[c.key] = (value + delta[c.unit], now + c.ttl_s)

    async def renew(self, holds: list[tuple[str, str]], lease_s: float) -> None:
        with self._lock:
            until = self._clock() + lease_s
            for key, member in holds:
                self._holds.get(key, _NONE).renew(member, until)

    async def held(self, key: str) -> int:
        with self._lock:
            return self._held(key, self._clock())

    async def adjust(self, key: str, delta: int, ttl_s: int) -> None:
        self.adjust_sync(key, delta, ttl_s)

    def adjust_sync(self, key: str, delta: int, ttl_s: int) -> None:
        with self._lock:
            now = self._clock()
            value = self._counter(key, now)
            if value is not None:  # a vanished counter is re-seeded from SQL, which has the real figure
                self._counters[key] = (max(0, value + delta), now + ttl_s)

    def bump_sync(self, key: str, ttl_s: int) -> None:
        """Add one to `key`, made at 1 if it does not exist (a version: governance/allowance_cache.py)."""
        with self._lock:
            now = self._clock()
            self._counters[key] = ((self._counter(key, now) or 0) + 1, now + ttl_s)

    async def get(self, key: str) -> int | None:
        with self._lock:
            return self._counter(key, self._clock())

    def get_many_sync(self, keys: list[str]) -> list[int | None]:
        with self._lock:
            now = self._clock()
            return [self._counter(key, now) for key in keys]

    async def close(self) -> None:
        return None
