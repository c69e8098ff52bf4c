"""An asyncio Redis client per event loop.

redis.asyncio connections belong to the loop that opened them; the app runs one loop, but tests, the
CLI and threads (asyncio.run) bring their own, so the client is re-created when the loop changes.
"""

from __future__ import annotations

import asyncio
from typing import Any


class LoopRedis:
    def __init__(self, url: str, scripts: dict[str, str] | None = None) -> None:
        self.url = url
        self._scripts_src = scripts or {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self.scripts: dict[str, Any] = {}

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(self.url, decode_responses=True)
            self.scripts = {name: self._client.register_script(src) for name, src in self._scripts_src.items()}
            self._loop = loop
        return self._client

    def script(self, name: str) -> Any:
        self.client()
        return self.scripts[name]

    async def close(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
