"""The Redis limits backend (several replicas share the counters): each operation one Lua script (ratelimit_lua.py)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from backend.governance.ratelimit_lua import (
    _ADJUST_LUA,
    _ADMIT_LUA,
    _BUMP_LUA,
    _CHARGE_ONCE_LUA,
    _HELD_LUA,
    _RENEW_LUA,
    _SETTLE_LUA,
    _SETTLE_MANY_LUA,
)
from backend.governance.ratelimit_types import Charge, Decision, Reservation, Window
from backend.governance.redis_client import LoopRedis


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
