"""What a limits backend is asked and answers (ratelimit.py): sliding windows and reserved counters to admit together,
the decision, what a turn is charged, and the backend's interface (ratelimit_memory.py, ratelimit_redis.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


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
