"""Atomic admission: sliding-window rate limits and reserved counters (tokens/day, budget/month).

One `admit()` checks every limit of a request and commits all of them or none, atomically:
- in-process: under one lock (one replica);
- Redis: in one Lua script (several replicas share the counters; Redis' clock is the only clock).
So N parallel requests against a limit of K get exactly min(N, K) admissions — no check-then-act race.

Counters are integers (tokens, micro-USD). A counter missing in the backend (new day, restart, Redis
flushed) is seeded from SQL, the source of truth, before it is used.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.governance.redis_client import LoopRedis


@dataclass(frozen=True)
class Window:
    """At most `limit` admissions per sliding `window_s` seconds under `key`."""

    key: str
    limit: int
    window_s: int
    name: str


@dataclass(frozen=True)
class Reservation:
    """Reserve `amount` on counter `key` if `used + amount <= limit`; `seed()` gives the used amount when the
    counter does not exist yet; the counter expires `ttl_s` after its last change."""

    key: str
    limit: int
    amount: int
    ttl_s: int
    name: str
    seed: Callable[[], int] = field(compare=False, default=lambda: 0)


@dataclass
class Decision:
    ok: bool
    denied: str | None = None  # name of the first limit that refused
    retry_after_s: float = 0.0  # for windows; budgets reset at their period end (the caller knows it)
    # Admitted: counter key -> value after this admission (this request's amount included).
    # Refused by a counter: that counter's key -> its value before this request (nothing was reserved), so the
    # caller can tell "used up" from "this request does not fit what remains".
    used: dict[str, int] = field(default_factory=dict)


class LimitBackend(Protocol):
    async def admit(self, windows: list[Window], reservations: list[Reservation]) -> Decision: ...
    async def adjust(self, key: str, delta: int, ttl_s: int) -> None: ...
    async def get(self, key: str) -> int | None: ...
    async def close(self) -> None: ...


class MemoryLimits:
    """Single-process backend (the embedded default)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires_at)

    def _counter(self, key: str, now: float) -> int | None:
        item = self._counters.get(key)
        if item is None or item[1] <= now:
            self._counters.pop(key, None)
            return None
        return item[0]

    def _admit(self, windows: list[Window], reservations: list[Reservation]) -> Decision:
        with self._lock:
            now = self._clock()
            for w in windows:
                hits = self._hits.setdefault(w.key, deque())
                while hits and hits[0] <= now - w.window_s:
                    hits.popleft()
                if len(hits) >= w.limit:
                    return Decision(False, w.name, max(0.001, hits[0] + w.window_s - now))
            values: dict[str, int] = {}
            for r in reservations:
                value = self._counter(r.key, now)
                if value is None:
                    value = int(r.seed())
                    self._counters[r.key] = (value, now + r.ttl_s)
                if value + r.amount > r.limit:
                    return Decision(False, r.name, 0.0, {r.key: value})
                values[r.key] = value
            for w in windows:
                self._hits[w.key].append(now)
            for r in reservations:
                values[r.key] += r.amount
                self._counters[r.key] = (values[r.key], now + r.ttl_s)
            return Decision(True, used=values)

    async def admit(self, windows: list[Window], reservations: list[Reservation]) -> Decision:
        return self._admit(windows, reservations)

    async def adjust(self, key: str, delta: int, ttl_s: int) -> None:
        with self._lock:
            now = self._clock()
            value = self._counter(key, now)
            if value is not None:  # a vanished counter is re-seeded from SQL, which has the real figure
                self._counters[key] = (max(0, value + delta), now + ttl_s)

    async def get(self, key: str) -> int | None:
        with self._lock:
            return self._counter(key, self._clock())

    async def close(self) -> None:
        return None


# KEYS: the window keys, then the counter keys. ARGV: n_windows, then per window (limit, window_ms),
# then per counter (limit, amount, ttl_s), then a unique member id.
# Returns {1, used...} | {0, index, retry_ms, used_of_refused} | {-1, index} (counter needs a seed).
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nw = tonumber(ARGV[1])
local nc = #KEYS - nw
for i = 1, nw do
  local limit = tonumber(ARGV[2 + (i - 1) * 2])
  local win = tonumber(ARGV[3 + (i - 1) * 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - win)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return {0, i, tonumber(oldest[2]) + win - now, 0}
  end
end
local base = 2 + nw * 2
local used = {}
for j = 1, nc do
  local v = redis.call('GET', KEYS[nw + j])
  if not v then return {-1, nw + j} end
  local limit = tonumber(ARGV[base + (j - 1) * 3])
  local amount = tonumber(ARGV[base + 1 + (j - 1) * 3])
  if tonumber(v) + amount > limit then return {0, nw + j, 0, tonumber(v)} end
  used[j] = tonumber(v) + amount
end
local member = ARGV[base + nc * 3]
for i = 1, nw do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + (i - 1) * 2]))
end
local out = {1}
for j = 1, nc do
  redis.call('INCRBY', KEYS[nw + j], tonumber(ARGV[base + 1 + (j - 1) * 3]))
  redis.call('EXPIRE', KEYS[nw + j], tonumber(ARGV[base + 2 + (j - 1) * 3]))
  out[j + 1] = used[j]
end
return out
"""

# Adjust only an existing counter (a missing one will be seeded from SQL, which already has the figure).
_ADJUST_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
if v < 0 then redis.call('SET', KEYS[1], 0) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


class RedisLimits:
    """Shared backend for several replicas (REDIS_URL)."""

    def __init__(self, url: str) -> None:
        self._redis = LoopRedis(url, {"admit": _ADMIT_LUA, "adjust": _ADJUST_LUA})

    async def admit(self, windows: list[Window], reservations: list[Reservation]) -> Decision:
        keys = [w.key for w in windows] + [r.key for r in reservations]
        args: list[Any] = [len(windows)]
        for w in windows:
            args += [w.limit, w.window_s * 1000]
        for r in reservations:
            args += [r.limit, r.amount, r.ttl_s]
        args.append(uuid.uuid4().hex)
        for _ in range(len(reservations) + 1):
            res = await self._redis.script("admit")(keys=keys, args=args)
            status = int(res[0])
            if status == 1:
                return Decision(True, used={r.key: int(v) for r, v in zip(reservations, res[1:], strict=True)})
            index = int(res[1]) - 1
            if status == 0:
                if index < len(windows):
                    return Decision(False, windows[index].name, max(0.001, int(res[2]) / 1000))
                r = reservations[index - len(windows)]
                return Decision(False, r.name, 0.0, {r.key: int(res[3])})
            r = reservations[index - len(windows)]
            seed = await asyncio.to_thread(r.seed)  # SQL; off the event loop
            await self._redis.client().set(r.key, int(seed), ex=r.ttl_s, nx=True)  # NX: another replica may win
        raise RuntimeError("quota counters could not be seeded")  # pragma: no cover - needs a flapping Redis

    async def adjust(self, key: str, delta: int, ttl_s: int) -> None:
        await self._redis.script("adjust")(keys=[key], args=[int(delta), ttl_s])

    async def get(self, key: str) -> int | None:
        value = await self._redis.client().get(key)
        return None if value is None else int(value)

    async def close(self) -> None:
        await self._redis.close()
