"""Atomic admission: sliding-window rate limits and reserved counters (tokens/day, budget/month).

One `admit()` checks every limit of a request and commits all of them or none, atomically:
- in-process: under one lock (one replica);
- Redis: in one Lua script (several replicas share the counters; Redis' clock is the only clock).
So N parallel requests against a limit of K get exactly min(N, K) admissions — no check-then-act race.

Counters are integers (tokens, micro-USD). A counter missing in the backend (new day, restart, Redis
flushed) is seeded from SQL, the source of truth, before it is used.

A counter holds what was *used* (settled); what answers in progress have *reserved* are holds beside it, each
with a lease (Redis: a sorted set of `hold:amount` members scored by their expiry, next to the counter). An
admission counts used + the live holds + its own amount against the limit, and first purges the expired holds —
a process that died mid-answer never renews its holds, so they stop counting a lease after it died, on the next
admission (atomically, in the same script). A living process renews its holds (QuotaService keeps them), and a
settlement removes the hold and adds what the call really used to the counter.
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
    # Counter key -> what was used (settled) before this request; `held`: what answers in progress (not this one)
    # have reserved on it. On a refusal by a counter, that counter's figures: the caller can tell "used up" from
    # "reserved by answers in progress" from "this request does not fit what remains".
    used: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Charge:
    """What one turn used, on one counter (charge_once): `unit` (tokens, usd) names the figure, the same for every
    counter of that unit; `member`: the turn's hold on that counter, removed (None: the turn holds none there)."""

    key: str
    unit: str
    amount: int
    ttl_s: int
    member: str | None = None


def hold_member(hold: str, amount: int) -> str:
    """A hold's member in its counter's hold set: the id and the amount (so the set alone says what is held)."""
    return f"{hold}:{int(amount)}"


class LimitBackend(Protocol):
    async def admit(self, windows: list[Window], reservations: list[Reservation], *, hold: str = "",
                    lease_s: float = 60.0) -> Decision: ...
    async def settle(self, key: str, member: str, actual: int, ttl_s: int) -> None: ...
    async def settle_many(self, items: list[tuple[str, str, int, int]]) -> None: ...
    async def charge_once(self, mark: str, items: list[Charge], mark_ttl_s: int) -> None: ...
    def charge_once_sync(self, mark: str, items: list[Charge], mark_ttl_s: int) -> None: ...
    async def renew(self, holds: list[tuple[str, str]], lease_s: float) -> None: ...
    async def held(self, key: str) -> int: ...
    async def adjust(self, key: str, delta: int, ttl_s: int) -> None: ...
    def adjust_sync(self, key: str, delta: int, ttl_s: int) -> None: ...
    def bump_sync(self, key: str, ttl_s: int) -> None: ...
    def get_many_sync(self, keys: list[str]) -> list[int | None]: ...
    async def get(self, key: str) -> int | None: ...
    async def close(self) -> None: ...


class MemoryLimits:
    """Single-process backend (the embedded default)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires_at)
        self._holds: dict[str, dict[str, tuple[int, float]]] = {}  # key -> member -> (amount, lease_until)
        self._marks: dict[str, tuple[dict[str, int], float]] = {}  # turn mark -> (unit -> charged, expires_at)

    def _counter(self, key: str, now: float) -> int | None:
        item = self._counters.get(key)
        if item is None or item[1] <= now:
            self._counters.pop(key, None)
            return None
        return item[0]

    def _held(self, key: str, now: float) -> int:
        holds = self._holds.get(key)
        if not holds:
            return 0
        total, lapsed = 0, None
        for member, (amount, until) in holds.items():  # one pass, no generator: this runs per counter per admission
            if until > now:
                total += amount
            else:
                lapsed = lapsed or []
                lapsed.append(member)
        for member in lapsed or ():
            del holds[member]  # a lease that nobody renewed: its process is gone
        return total

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
                    self._holds.setdefault(r.key, {})[hold_member(hold, r.amount)] = (r.amount, now + lease_s)
            return Decision(True, used=values, held=held)

    async def admit(self, windows: list[Window], reservations: list[Reservation], *, hold: str = "",
                    lease_s: float = 60.0) -> Decision:
        return self._admit(windows, reservations, hold or uuid.uuid4().hex, lease_s)

    async def settle(self, key: str, member: str, actual: int, ttl_s: int) -> None:
        with self._lock:
            self._holds.get(key, {}).pop(member, None)
        self.adjust_sync(key, actual, ttl_s)

    async def settle_many(self, items: list[tuple[str, str, int, int]]) -> None:
        """(key, hold member, actual, ttl_s) for every level of one call, under one lock (no half-settled call)."""
        with self._lock:
            now = self._clock()
            for key, member, actual, ttl_s in items:
                self._holds.get(key, {}).pop(member, None)
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
                if c.member is not None:
                    self._holds.get(c.key, {}).pop(c.member, None)
                value = self._counter(c.key, now)
                if value is not None:  # a vanished counter is re-seeded from SQL, which has the real figure
                    self._counters[c.key] = (value + delta[c.unit], now + c.ttl_s)

    async def renew(self, holds: list[tuple[str, str]], lease_s: float) -> None:
        with self._lock:
            until = self._clock() + lease_s
            for key, member in holds:
                item = self._holds.get(key, {}).get(member)
                if item is not None:  # a hold already purged stays released
                    self._holds[key][member] = (item[0], until)

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


# KEYS: the window keys, then per counter its key and its hold set. ARGV: n_windows, then per window (limit,
# window_ms), then per counter (limit, amount, ttl_s), then the hold id, then the lease (ms).
# Returns {1, used1, held1, ...} | {0, index, retry_ms, used, held} | {-1, index} (counter needs a seed); `index`
# counts windows then counters, from 1. Holds are `id:amount` members scored by their lease's end (Redis' clock).
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nw = tonumber(ARGV[1])
local nc = (#KEYS - nw) / 2
for i = 1, nw do
  local limit = tonumber(ARGV[2 + (i - 1) * 2])
  local win = tonumber(ARGV[3 + (i - 1) * 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - win)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return {0, i, tonumber(oldest[2]) + win - now, 0, 0}
  end
end
local base = 2 + nw * 2
local used, held = {}, {}
for j = 1, nc do
  local ck, hk = KEYS[nw + 2 * j - 1], KEYS[nw + 2 * j]
  redis.call('ZREMRANGEBYSCORE', hk, '-inf', now)
  local h = 0
  for _, m in ipairs(redis.call('ZRANGE', hk, 0, -1)) do
    h = h + tonumber(string.match(m, ':(%d+)$'))
  end
  local v = redis.call('GET', ck)
  if not v then return {-1, nw + j} end
  local limit = tonumber(ARGV[base + (j - 1) * 3])
  local amount = tonumber(ARGV[base + 1 + (j - 1) * 3])
  if tonumber(v) + h + amount > limit then return {0, nw + j, 0, tonumber(v), h} end
  used[j], held[j] = tonumber(v), h
end
local hold = ARGV[base + nc * 3]
local lease = tonumber(ARGV[base + nc * 3 + 1])
for i = 1, nw do
  redis.call('ZADD', KEYS[i], now, hold)
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + (i - 1) * 2]))
end
local out = {1}
for j = 1, nc do
  local ck, hk = KEYS[nw + 2 * j - 1], KEYS[nw + 2 * j]
  local amount = tonumber(ARGV[base + 1 + (j - 1) * 3])
  local ttl = tonumber(ARGV[base + 2 + (j - 1) * 3])
  if amount > 0 then
    redis.call('ZADD', hk, now + lease, hold .. ':' .. amount)
    redis.call('EXPIRE', hk, ttl)
  end
  redis.call('EXPIRE', ck, ttl)
  out[2 * j] = used[j]
  out[2 * j + 1] = held[j]
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

# KEYS: counter, its hold set. ARGV: the hold's member, what the call used, ttl_s. The hold goes, the use counts.
_SETTLE_LUA = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]))
if v < 0 then redis.call('SET', KEYS[1], 0) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS: per level its counter and hold set. ARGV: per level (member, actual, ttl_s). Every level of one call at once.
_SETTLE_MANY_LUA = """
for i = 1, #KEYS / 2 do
  local ck, hk = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZREM', hk, ARGV[3 * i - 2])
  if redis.call('EXISTS', ck) == 1 then
    local v = redis.call('INCRBY', ck, tonumber(ARGV[3 * i - 1]))
    if v < 0 then redis.call('SET', ck, 0) end
    redis.call('EXPIRE', ck, tonumber(ARGV[3 * i]))
  end
end
return 1
"""

# KEYS: the turn's mark (a hash: unit -> what was charged for the turn so far), then per counter its key and hold set.
# ARGV: the mark's ttl_s, then per counter (hold member or '', unit, amount, ttl_s). Each unit's counters get only what
# exceeds what was already charged for the turn (by its process settling it or a survivor reaping it): counted once.
_CHARGE_ONCE_LUA = """
local n = (#KEYS - 1) / 2
local delta = {}
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local unit, amount = ARGV[b + 2], tonumber(ARGV[b + 3])
  if delta[unit] == nil then
    local before = tonumber(redis.call('HGET', KEYS[1], unit) or '0')
    if amount > before then
      delta[unit] = amount - before
      redis.call('HSET', KEYS[1], unit, amount)
    else
      delta[unit] = 0
    end
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local ck, hk = KEYS[2 * i], KEYS[2 * i + 1]
  if ARGV[b + 1] ~= '' then redis.call('ZREM', hk, ARGV[b + 1]) end
  if redis.call('EXISTS', ck) == 1 then
    redis.call('INCRBY', ck, delta[ARGV[b + 2]])
    redis.call('EXPIRE', ck, tonumber(ARGV[b + 4]))
  end
end
return 1
"""

_BUMP_LUA = """
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS: hold sets; ARGV: lease_ms, then one member per key. Only holds still there are extended (XX).
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
end
return #KEYS
"""

# KEYS: a hold set. The live holds' total (expired ones purged).
_HELD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local h = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  h = h + tonumber(string.match(m, ':(%d+)$'))
end
return h
"""


def holds_key(key: str) -> str:
    """The hold set beside a counter."""
    return f"{key}:holds"


class RedisLimits:
    """Shared backend for several replicas (REDIS_URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis = LoopRedis(url, {"admit": _ADMIT_LUA, "adjust": _ADJUST_LUA, "settle": _SETTLE_LUA,
                                      "settle_many": _SETTLE_MANY_LUA, "charge_once": _CHARGE_ONCE_LUA,
                                      "renew": _RENEW_LUA, "held": _HELD_LUA})
        self._sync: Any = None  # for the lease keeper's thread (governance/leases.py)
        self._sync_lock = threading.Lock()

    async def admit(self, windows: list[Window], reservations: list[Reservation], *, hold: str = "",
                    lease_s: float = 60.0) -> Decision:
        keys = [w.key for w in windows]
        for r in reservations:
            keys += [r.key, holds_key(r.key)]
        args: list[Any] = [len(windows)]
        for w in windows:
            args += [w.limit, w.window_s * 1000]
        for r in reservations:
            args += [r.limit, r.amount, r.ttl_s]
        args += [hold or uuid.uuid4().hex, max(1, int(lease_s * 1000))]
        for _ in range(len(reservations) + 1):
            res = await self._redis.script("admit")(keys=keys, args=args)
            status = int(res[0])
            if status == 1:
                return Decision(True, used={r.key: int(res[1 + 2 * j]) for j, r in enumerate(reservations)},
                                held={r.key: int(res[2 + 2 * j]) for j, r in enumerate(reservations)})
            index = int(res[1]) - 1
            if status == 0:
                if index < len(windows):
                    return Decision(False, windows[index].name, max(0.001, int(res[2]) / 1000))
                r = reservations[index - len(windows)]
                return Decision(False, r.name, 0.0, {r.key: int(res[3])}, {r.key: int(res[4])})
            r = reservations[index - len(windows)]
            seed = await asyncio.to_thread(r.seed)  # SQL; off the event loop
            await self._redis.client().set(r.key, int(seed), ex=r.ttl_s, nx=True)  # NX: another replica may win
        raise RuntimeError("quota counters could not be seeded")  # pragma: no cover - needs a flapping Redis

    async def settle(self, key: str, member: str, actual: int, ttl_s: int) -> None:
        await self._redis.script("settle")(keys=[key, holds_key(key)], args=[member, int(actual), ttl_s])

    async def settle_many(self, items: list[tuple[str, str, int, int]]) -> None:
        if items:
            keys = [k for key, *_ in items for k in (key, holds_key(key))]
            await self._redis.script("settle_many")(
                keys=keys, args=[a for _, member, actual, ttl in items for a in (member, int(actual), ttl)])

    async def charge_once(self, mark: str, items: list[Charge], mark_ttl_s: int) -> None:
        keys, args = _charge_once_call(mark, items, mark_ttl_s)
        await self._redis.script("charge_once")(keys=keys, args=args)

    def charge_once_sync(self, mark: str, items: list[Charge], mark_ttl_s: int) -> None:
        """From a thread without an event loop (the lease keeper charging a dead process's turns)."""
        keys, args = _charge_once_call(mark, items, mark_ttl_s)
        self._sync_scripts()["charge_once"](keys=keys, args=args)

    async def renew(self, holds: list[tuple[str, str]], lease_s: float) -> None:
        if holds:
            await self._redis.script("renew")(keys=[holds_key(k) for k, _ in holds],
                                              args=[max(1, int(lease_s * 1000)), *(m for _, m in holds)])

    async def held(self, key: str) -> int:
        return int(await self._redis.script("held")(keys=[holds_key(key)], args=[]))

    async def adjust(self, key: str, delta: int, ttl_s: int) -> None:
        await self._redis.script("adjust")(keys=[key], args=[int(delta), ttl_s])

    def adjust_sync(self, key: str, delta: int, ttl_s: int) -> None:
        """From a thread without an event loop (the lease keeper charging a dead process's turns)."""
        self._sync_scripts()["adjust"](keys=[key], args=[int(delta), ttl_s])

    def bump_sync(self, key: str, ttl_s: int) -> None:
        """Add one to `key`, made at 1 if it does not exist (a version: governance/allowance_cache.py)."""
        self._sync_scripts()["bump"](keys=[key], args=[int(ttl_s)])

    def get_many_sync(self, keys: list[str]) -> list[int | None]:
        """Counters' values from a thread (the metrics' scrape): one MGET; None for a missing counter."""
        if not keys:
            return []
        return [None if v is None else int(v) for v in self._client_sync()[0].mget(keys)]

    def _sync_scripts(self) -> dict[str, Any]:
        return self._client_sync()[1]

    def _client_sync(self) -> tuple[Any, dict[str, Any]]:
        with self._sync_lock:
            if self._sync is None:
                import redis

                client = redis.Redis.from_url(self.url, decode_responses=True)
                self._sync = (client, {"adjust": client.register_script(_ADJUST_LUA),
                                       "charge_once": client.register_script(_CHARGE_ONCE_LUA),
                                       "bump": client.register_script(_BUMP_LUA)})
            return self._sync

    async def get(self, key: str) -> int | None:
        value = await self._redis.client().get(key)
        return None if value is None else int(value)

    async def close(self) -> None:
        await self._redis.close()
        if self._sync is not None:
            self._sync[0].close()
            self._sync = None


def _charge_once_call(mark: str, items: list[Charge], mark_ttl_s: int) -> tuple[list[str], list[Any]]:
    keys, args = [mark], [int(mark_ttl_s)]
    for c in items:
        keys += [c.key, holds_key(c.key)]
        args += [c.member or "", c.unit, int(c.amount), int(c.ttl_s)]
    return keys, args
