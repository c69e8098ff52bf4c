"""Once per window: whether this process is the one that raises an alert (suspicious_access) for a source.

The denials an alert counts are rows in the shared database, so every replica sees the threshold crossed; without
a shared "already alerted" mark each of N replicas would write its own event (N pods, N duplicate alerts). With
REDIS_URL the mark is one `SET NX EX` in Redis, which exactly one replica wins per window; without Redis it is
this process's memory (one process, one alert).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any, Protocol

log = logging.getLogger("atrium.audit")

MAX_REMEMBERED = 10_000  # in-process marks; past it, those older than their window are forgotten


class AlertGate(Protocol):
    def first(self, key: str, window_s: int) -> bool:
        """True for the first caller for `key` within `window_s` seconds (that caller raises the alert)."""
        ...

    def close(self) -> None: ...


class LocalAlertGate:
    def __init__(self) -> None:
        self._marked: dict[str, tuple[float, int]] = {}  # key -> (monotonic time marked, its window)
        self._lock = threading.Lock()

    def first(self, key: str, window_s: int) -> bool:
        now = time.monotonic()
        with self._lock:
            marked = self._marked.get(key)
            if marked is not None and now - marked[0] < marked[1]:
                return False
            self._marked[key] = (now, window_s)
            if len(self._marked) > MAX_REMEMBERED:  # many sources cannot grow it without bound
                self._marked = {k: m for k, m in self._marked.items() if now - m[0] < m[1]}
            return True

    def close(self) -> None:
        return None


class RedisAlertGate:
    """Shared by every replica on one Redis (REDIS_URL); keys under `{prefix}:alerted:`."""

    def __init__(self, url: str, *, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._client: Any = None
        self._fallback = LocalAlertGate()

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
        return self._client

    def key(self, key: str) -> str:
        # Hashed: the source is a user name or an IP from a request; the key stays short and free of separators.
        return f"{self.prefix}:alerted:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    def first(self, key: str, window_s: int) -> bool:
        try:
            return bool(self._redis().set(self.key(key), "1", nx=True, ex=max(1, int(window_s))))
        except Exception as exc:  # an alert is worth a duplicate, never a silence: decide in this process
            log.warning("suspicious-access dedup: Redis did not answer, deciding in this process",
                        extra={"error": f"{type(exc).__name__}: {exc}", "fix": "check REDIS_URL"})
            return self._fallback.first(key, window_s)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def alert_gate(redis_url: str | None, *, prefix: str) -> AlertGate:
    """Shared across replicas with REDIS_URL, else this process's."""
    return RedisAlertGate(redis_url, prefix=prefix) if redis_url else LocalAlertGate()
