"""The demo password sign-in as a service: slow hashing kept off everyone else's threads, failures limited per
address and per account, the same cost for an unknown account as for a known one, and every refusal audited.

PBKDF2 is deliberately slow (~80 ms). On the process's shared worker threads, 24 concurrent wrong passwords made
another user's request wait 2 s; here at most two run at a time on threads of their own, and a queue longer than
MAX_PENDING is refused at once. An unknown user name is checked against a dummy hash, so the time taken does not
tell which accounts exist. Repeated failures from one address for one account (or many accounts) are refused for
the rest of the window with a 429 and Retry-After, before any hashing.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backend.auth.demo_users import DemoUsers
from backend.auth.guard import AuditSink
from backend.auth.passwords import hash_password, verify_password

WINDOW_S = 300
FAILURES_PER_ACCOUNT = 5  # from one address, within the window
FAILURES_PER_ADDRESS = 30  # any accounts, from one address, within the window
MAX_PENDING = 16  # password checks waiting for a hashing thread
HASH_THREADS = 2


class TooManyAttempts(Exception):
    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class PasswordLogin:
    def __init__(self, *, users: Callable[[], DemoUsers], audit: AuditSink,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._users = users
        self.audit = audit
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="atrium-password")
        self._pending = 0
        self._dummy = hash_password("not a password anyone has")  # an unknown user costs what a known one does

    async def authenticate(self, username: str, password: str, *, ip: str | None) -> dict[str, Any] | None:
        """The user's claims, or None for a wrong user name or password (audited); raises TooManyAttempts."""
        address = ip or "unknown"
        limited = await self.refusal(username, ip=ip)
        if limited is not None:
            raise limited
        self._pending += 1
        try:
            claims = await asyncio.get_running_loop().run_in_executor(self._pool, self._check, username, password)
        finally:
            self._pending -= 1
        if claims is None:
            await asyncio.to_thread(self._fail, username, address)
        return claims

    async def refusal(self, username: str, *, ip: str | None) -> TooManyAttempts | None:
        """Why this sign-in is refused before any password is checked (too many failures), audited; else None.
        The chat's sign-in asks before Chainlit runs (ui/login_errors.py): its callback cannot answer a 429."""
        address = ip or "unknown"
        limited = self._limited(username, address)
        if limited is None and self._pending >= MAX_PENDING:
            limited = TooManyAttempts("Too many sign-ins at once: try again in a few seconds.", 5)
        if limited is not None:
            await asyncio.to_thread(self.audit.record, "denied", subject=None, route="/chat/login", ip=address,
                                    status=429, reason="too_many_sign_ins",
                                    detail={"method": "password", "username": username})
        return limited

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _check(self, username: str, password: str) -> dict[str, Any] | None:
        users = self._users()
        claims = users.current_claims(username)
        if claims is None:
            verify_password(password, self._dummy)
            return None
        return users.authenticate(username, password)

    def _limited(self, username: str, address: str) -> TooManyAttempts | None:
        now = self._clock()
        with self._lock:
            account = self._recent(("account", f"{address}\0{username}"), now)
            everyone = self._recent(("address", address), now)
        for failures, limit in ((account, FAILURES_PER_ACCOUNT), (everyone, FAILURES_PER_ADDRESS)):
            if len(failures) >= limit:
                wait = max(1, math.ceil(failures[0] + WINDOW_S - now))
                return TooManyAttempts(f"Too many failed sign-ins from here: try again in {_minutes(wait)}.", wait)
        return None

    def _fail(self, username: str, address: str) -> None:
        now = self._clock()
        known = self._users().current_claims(username) is not None
        with self._lock:
            for key in (("account", f"{address}\0{username}"), ("address", address)):
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # forget addresses quiet for a window
                self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < WINDOW_S}
        # A known account's failures are its own (repeated ones raise suspicious_access for it); an unknown name
        # is the address's (a flood of made-up names groups into one row per address).
        self.audit.record("denied", subject=username if known else None, route="/chat/login", ip=address,
                          status=401, reason="bad_password",
                          detail={"method": "password", **({} if known else {"username": username})})

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        while seen and now - seen[0] >= WINDOW_S:
            seen.popleft()
        return seen


def _minutes(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 90 else f"{round(seconds / 60)} minutes"
