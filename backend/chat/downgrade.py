"""Degrade before refusing (`quotas.on_budget: downgrade`): a call whose tier no longer fits a budget is answered on
the next cheaper tier the tenant allows and that is live, and the answer says so once.

Only budget refusals (tokens a day, dollars a month, at any level: the department's, the member's, the assistant's)
move a call down: a rate limit is not about price, and a cheaper tier would not wait for it. The order is smart ->
fast -> local; a tier outside `allowed_tiers` is never used. The local model costs no dollars, so a spent budget in
dollars still leaves it (its tokens count); when nothing fits, the refusal of the tier routed stands.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.errors import QuotaExceeded
from backend.governance.allowances import BUDGET_LIMITS

CHEAPER = ("smart", "fast", "local")  # most expensive first
NOTE_PREFIX = "Answered by the "  # the downgrade's line: the chat shows it as the clear one, not a quiet warning


def cheaper_tier(tier: str, exc: QuotaExceeded, *, allowed: list[str], live: list[str], max_tokens: int | None,
                 cap: Callable[[str], tuple[int, str] | None]) -> str | None:
    """The next cheaper allowed, live tier after `tier` that can write `max_tokens`, or None."""
    if exc.limit not in BUDGET_LIMITS or tier not in CHEAPER:
        return None
    for candidate in CHEAPER[CHEAPER.index(tier) + 1:]:
        if candidate not in allowed or candidate not in live:
            continue
        if max_tokens and (limit := cap(candidate)) and max_tokens > limit[0]:
            continue  # the caller asked for more than it can write
        return candidate
    return None


def downgrade_note(first: str, tier: str, exc: QuotaExceeded) -> str:
    """The one line the answer carries: which tier answered instead, and why (the refusal names the level and when
    it resets)."""
    return f"{NOTE_PREFIX}{tier} tier instead of {first}: {exc.message}"
