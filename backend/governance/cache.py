"""Response cache for first-turn questions, in-process (LRU + TTL) or Redis.

The key covers everything that changes an answer: tenant + assistant + prompt version + knowledge-base
version + model + normalised question. Any change of one of them is a different key, so invalidation
needs no bookkeeping; old entries age out (TTL / LRU). Keys start with the tenant: never shared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from typing import Any, Protocol

from backend.governance.redis_client import LoopRedis

log = logging.getLogger("atrium.cache")

_SPACE_RE = re.compile(r"\s+")
_TRAIL_RE = re.compile(r"[\s?!.…]+$")


def normalise_question(text: str) -> str:
    """Case, spacing, Unicode form and trailing punctuation do not make a different question."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _TRAIL_RE.sub("", _SPACE_RE.sub(" ", text).strip())


def cache_key(*, prefix: str, tenant: str, assistant: str, prompt_version: int | str | None,
              kb_version: int | str | None, model: str, question: str, personal: str = "") -> str:
    """`personal`: what the prompt renders per request (the user's name, today's date), so that an answer
    greeting Alice is never served to Bob, nor yesterday's "today" tomorrow."""
    parts = [tenant, assistant, str(prompt_version), str(kb_version), model, normalise_question(question)]
    if personal:
        parts.append(personal)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{prefix}:cache:{tenant}:{digest}"


class CacheBackend(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def set(self, key: str, value: dict[str, Any], ttl_s: int) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, max_entries: int = 5000, clock=time.monotonic) -> None:
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return json.loads(item[1])

    async def set(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        with self._lock:
            self._data[key] = (self._clock() + ttl_s, json.dumps(value))
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    async def close(self) -> None:
        return None


class RedisCache:
    def __init__(self, url: str) -> None:
        self._redis = LoopRedis(url)

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self._redis.client().get(key)
        return json.loads(raw) if raw else None

    async def set(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        await self._redis.client().set(key, json.dumps(value), ex=ttl_s)

    async def close(self) -> None:
        await self._redis.close()


class ResponseCache:
    def __init__(self, *, backend: CacheBackend, prefix: str = "atrium", ttl_s: int = 86400,
                 enabled: bool = True) -> None:
        self.backend = backend
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.enabled = enabled

    def key(self, **parts: Any) -> str:
        return cache_key(prefix=self.prefix, **parts)

    async def get(self, key: str) -> dict[str, Any] | None:
        """A cache that does not answer (Redis down) is a miss: answers go on without it."""
        if not self.enabled:
            return None
        try:
            return await self.backend.get(key)
        except Exception as exc:
            _unavailable(exc)
            return None

    async def set(self, key: str, value: dict[str, Any]) -> None:
        if self.enabled:
            try:
                await self.backend.set(key, value, self.ttl_s)
            except Exception as exc:
                _unavailable(exc)


def _unavailable(exc: Exception) -> None:
    if type(exc).__module__.split(".")[0] != "redis":
        raise exc
    log.warning("response cache unavailable: answering without it", extra={"error": f"{type(exc).__name__}: {exc}"})
