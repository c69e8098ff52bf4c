"""The counters a model call reserves on, and their keys: the tenant's day (tokens) and month (micro-USD), a
member's day and month, an assistant's month. Every key is prefixed with its tenant; a counter missing from the
backend (a new period, Redis flushed) is seeded from SQL with what the usage rows say was used."""

from __future__ import annotations

from datetime import datetime

from backend.db.engine import Database
from backend.governance.allowances import (
    ASSISTANT_USD,
    BUDGET_TTL_S,
    MEMBER_TOKENS,
    MEMBER_USD,
    MICRO,
    TOKENS_TTL_S,
    Allowance,
    Level,
    day_start,
    member_id,
    month_id,
    month_start,
)
from backend.governance.quota_reads import sum_usage_seed
from backend.tenants import TenantConfig


class Counters:
    """The keys under `prefix` (ATRIUM_REDIS_PREFIX), seeded from `db`."""

    def __init__(self, *, prefix: str, db: Database) -> None:
        self.prefix = prefix
        self.db = db
        self._periods: tuple[tuple, tuple[datetime, datetime, str, str]] | None = None

    def periods(self, now: datetime) -> tuple[datetime, datetime, str, str]:
        """(day start, month start, day key, month key) of `now`: the same all day, so made once a day (every
        admission needs them)."""
        stamp = (now.date(), now.tzinfo)
        cached = self._periods
        if cached is None or cached[0] != stamp:
            day = day_start(now)
            cached = self._periods = (stamp, (day, month_start(now), day.strftime("%Y%m%d"), month_id(now)))
        return cached[1]

    def key(self, tenant: str, *parts: str) -> str:
        return ":".join([self.prefix, "quota", tenant, *parts])  # every bucket is prefixed with its tenant

    def levels(self, cfg: TenantConfig, subject: str, allowance: Allowance | None, assistant: str | None,
               tokens: int, micro: int | None, now: datetime) -> list[Level]:
        """The counters the call reserves on, the most specific first (its refusal names the member's allowance
        before the department's); `micro=None`: a free call, on no budget in dollars."""
        tenant, quotas, db = cfg.id, cfg.quotas, self.db
        day, month, dkey, mkey = self.periods(now)
        out: list[Level] = []
        if allowance is not None:
            who = member_id(subject)
            if allowance.tokens_per_day is not None:
                out.append(Level(self.key(tenant, "member", who, "tokens", dkey), int(allowance.tokens_per_day),
                                 tokens, TOKENS_TTL_S, MEMBER_TOKENS, "tokens",
                                 lambda: sum_usage_seed(db, tenant, day, subject=subject)[0]))
            if allowance.monthly_budget_usd is not None and micro is not None:
                out.append(Level(self.key(tenant, "member", who, "usd", mkey),
                                 round(allowance.monthly_budget_usd * MICRO), micro, BUDGET_TTL_S, MEMBER_USD, "usd",
                                 lambda: round(sum_usage_seed(db, tenant, month, subject=subject)[1] * MICRO)))
        budget = quotas.assistants.get(assistant) if assistant else None
        if budget is not None and budget.monthly_budget_usd is not None and micro is not None:
            out.append(Level(self.key(tenant, "assistant", str(assistant), "usd", mkey),
                             round(budget.monthly_budget_usd * MICRO), micro, BUDGET_TTL_S, ASSISTANT_USD, "usd",
                             lambda: round(sum_usage_seed(db, tenant, month, assistant=assistant)[1] * MICRO)))
        if quotas.tokens_per_day is not None:
            out.append(Level(self.key(tenant, "tokens", dkey), int(quotas.tokens_per_day), tokens, TOKENS_TTL_S,
                             "tokens_per_day", "tokens", lambda: sum_usage_seed(db, tenant, day)[0]))
        if quotas.monthly_budget_usd is not None and micro is not None:
            out.append(Level(self.key(tenant, "usd", mkey), round(quotas.monthly_budget_usd * MICRO), micro,
                             BUDGET_TTL_S, "monthly_budget_usd", "usd",
                             lambda: round(sum_usage_seed(db, tenant, month)[1] * MICRO)))
        return out

    def member_keys(self, tenant: str, subject: str, *, now: datetime) -> tuple[str, str]:
        """The member's counters today (tokens) and this month (micro-USD)."""
        who = member_id(subject)
        return (self.key(tenant, "member", who, "tokens", day_start(now).strftime("%Y%m%d")),
                self.key(tenant, "member", who, "usd", month_id(now)))
