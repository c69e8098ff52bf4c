"""Nested budgets inside a tenant's quotas: each member's allowance and an assistant's own monthly budget.

`quotas.member` is every member's allowance (tokens/day, USD/month); `quotas.member_overrides` give the members
with a role or in a claim group another one (the first that matches; its unset fields from `quotas.member`); a
tenant admin can raise one member's allowance for the month (SQL, kept per process under a version every raise
bumps, allowance_cache.py: every replica applies it at once). `quotas.assistants` caps an assistant's month.
QuotaService reserves all the levels a call falls under — the tenant's, the member's, the assistant's — in one
atomic admission (one lock / one Lua script), so a call is admitted only if each has room and nothing overshoots
under parallel load.

A refusal names the level (your allowance, this assistant's budget, the department's) and when it resets.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.db.models import MemberAllowance
from backend.errors import QuotaExceeded
from backend.tenants import Quotas, TenantConfig

MICRO = 1_000_000
TOKENS_TTL_S, BUDGET_TTL_S = 2 * 86400, 40 * 86400  # a counter outlives its period
IN_PROGRESS_RETRY_S = 10

# The names of the limits (QuotaExceeded.limit), by level.
MEMBER_TOKENS, MEMBER_USD, ASSISTANT_USD = "member_tokens_per_day", "member_monthly_budget_usd", \
    "assistant_monthly_budget_usd"
BUDGET_LIMITS = frozenset({"tokens_per_day", "monthly_budget_usd", MEMBER_TOKENS, MEMBER_USD, ASSISTANT_USD})
LEVEL_OF = {"tokens_per_day": "tenant", "monthly_budget_usd": "tenant", MEMBER_TOKENS: "member",
            MEMBER_USD: "member", ASSISTANT_USD: "assistant"}


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def next_month(now: datetime) -> datetime:
    return (month_start(now) + timedelta(days=32)).replace(day=1)


def month_id(now: datetime) -> str:
    return now.strftime("%Y%m")


@functools.lru_cache(maxsize=4096)  # every admission of a member's call hashes the same subject
def member_id(subject: str) -> str:
    """A member's part of a counter key (hashed: subjects are arbitrary text)."""
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Allowance:
    """A member's allowance: None = no member limit (the tenant's and the assistant's still apply)."""

    tokens_per_day: int | None
    monthly_budget_usd: float | None
    source: str  # "default" or an override's name (tenants.yaml)
    raised: bool = False  # a tenant admin raised it for this month

    @property
    def limited(self) -> bool:
        return self.tokens_per_day is not None or self.monthly_budget_usd is not None


def configured_allowance(quotas: Quotas, roles: frozenset[str], groups: frozenset[str]) -> Allowance:
    """The member's allowance from tenants.yaml: the first override matching a role or claim group, else `member`."""
    base = quotas.member
    for o in quotas.member_overrides:
        if (o.role is not None and o.role in roles) or o.name in groups:
            return Allowance(o.tokens_per_day if "tokens_per_day" in o.model_fields_set else base.tokens_per_day,
                             o.monthly_budget_usd if "monthly_budget_usd" in o.model_fields_set
                             else base.monthly_budget_usd, o.name)
    return Allowance(base.tokens_per_day, base.monthly_budget_usd, "default")


def allowance_named(quotas: Quotas, source: str | None) -> Allowance:
    """The configured allowance a call was admitted under (`source` from its usage row; None: the default)."""
    override = next((o for o in quotas.member_overrides if o.name == source), None)
    return configured_allowance(quotas, frozenset({override.role}) if override and override.role else frozenset(),
                                frozenset({override.name}) if override else frozenset())


def with_raise(allowance: Allowance, raised: MemberAllowance | None) -> Allowance:
    """A tenant admin's raise for this month replaces the fields it sets."""
    if raised is None:
        return allowance
    return Allowance(raised.tokens_per_day if raised.tokens_per_day is not None else allowance.tokens_per_day,
                     raised.monthly_budget_usd if raised.monthly_budget_usd is not None
                     else allowance.monthly_budget_usd, allowance.source, True)


@dataclass(frozen=True)
class Level:
    """One counter a call reserves on: the tenant's, the member's or the assistant's (tokens or micro-USD)."""

    key: str
    limit: int
    amount: int
    ttl_s: int
    name: str  # the limit's name (QuotaExceeded.limit)
    unit: str  # tokens | usd
    seed: Callable[[], int]

    @property
    def level(self) -> str:
        return LEVEL_OF[self.name]


def usd(micro: int) -> str:
    """Dollars for a message: cents for large amounts, up to 6 (micro-USD) for the small ones a request costs."""
    x = micro / MICRO
    text = f"{x:,.2f}" if x >= 1 else f"{x:.6f}".rstrip("0")
    return "$" + (text + "0" * (2 - len(text.partition(".")[2])) if "." in text else text)


def nested_refusal(level: Level, *, tenant: TenantConfig, assistant: str | None, used: int, held: int,
                   now: datetime, fix: str) -> QuotaExceeded:
    """The 429 of a member's or an assistant's budget: whose it is, what remains, when it resets."""
    tokens = level.unit == "tokens"
    reset = day_start(now) + timedelta(days=1) if tokens else next_month(now)
    when = f"at {reset:%Y-%m-%d %H:%M} UTC" if tokens else f"on {reset:%Y-%m-%d} (00:00 UTC)"
    cap, need = level.limit, level.amount
    amount = (lambda n: f"{n:,} tokens") if tokens else usd
    if level.level == "member":
        whole = named = (f"your allowance of {cap:,} tokens for today in {tenant.name}" if tokens
                         else f"your monthly allowance of {usd(cap)} in {tenant.name}")
        who, raise_it = "You have", f"A tenant admin of {tenant.name} can raise it for this month."
    else:
        title = a.title if (a := tenant.assistant(assistant or "")) else (assistant or "")
        whole, named = f"its monthly budget of {usd(cap)}", f"{title}'s monthly budget of {usd(cap)}"
        who = f"{title} has"
        raise_it = f"Other assistants of {tenant.name} still answer; a platform operator can raise it in tenants.yaml."
    retry_after: float | None = (reset - now).total_seconds()
    if cap <= 0:  # 0 blocks, as a tenant's 0 does
        retry_after = None
        msg = f"{named[0].upper()}{named[1:]} is 0: model calls are switched off here. {raise_it}"
    elif used >= cap:
        msg = f"{who} used {whole}; it resets {when}. {raise_it}"
    elif held and need <= cap - used:
        retry_after = IN_PROGRESS_RETRY_S
        msg = (f"{who} used {amount(used)} of {whole}; {amount(held)} more is reserved by answers in progress: "
               "retry when they finish.")
    else:
        msg = (f"This request may need up to {amount(need)} but only {amount(max(0, cap - used - held))} of {named} "
               f"remain; {fix}")
        if need > cap:
            retry_after = None
            msg += " (it needs more than the whole allowance, so waiting will not help)."
        else:
            msg += f", or wait until it resets {when}."
    return QuotaExceeded(msg, retry_after=None if retry_after is None else math.ceil(retry_after), limit=level.name,
                         level=level.level, resets_at=reset.isoformat())


def nested_warning(level: Level, *, tenant: TenantConfig, assistant: str | None, used: int,
                   now: datetime) -> str:
    """The quiet line at the warning ratio: how much of the member's (or the assistant's) share is used."""
    share = used / level.limit
    if level.unit == "tokens":
        reset = day_start(now) + timedelta(days=1)
        return (f"You have used {share:.0%} of your {level.limit:,} tokens for today in {tenant.name} (resets at "
                f"{reset:%H:%M} UTC).")
    reset = next_month(now)
    if level.level == "member":
        return (f"You have used {share:.0%} of your monthly allowance of {usd(level.limit)} in {tenant.name} "
                f"(resets on {reset:%Y-%m-%d}).")
    title = a.title if (a := tenant.assistant(assistant or "")) else assistant
    return f"{title} has used {share:.0%} of its monthly budget of {usd(level.limit)} (resets on {reset:%Y-%m-%d})."
