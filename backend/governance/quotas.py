"""Tenant quotas from config/tenants.yaml: requests/min (tenant and user), tokens/day, monthly budget.

Before a model call, `admit()` atomically takes one request slot from both rate windows and reserves the
call's estimated tokens and cost against the day's tokens and the month's budget (see ratelimit.py);
`settle()` replaces the estimate with the real figures afterwards, `release()` returns it on failure.
A refusal is QuotaExceeded (429) naming the limit, with Retry-After = when it frees up. At 80% of a
budget the admission carries a warning for the user.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from backend.db.engine import Database
from backend.db.repositories.usage import sum_usage
from backend.errors import QuotaExceeded
from backend.governance.ratelimit import LimitBackend, Reservation, Window
from backend.tenants import TenantRegistry

log = logging.getLogger("atrium.quotas")

MICRO = 1_000_000  # budgets are counted in micro-USD (integers are atomic in Redis)


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(now: datetime) -> datetime:
    return _day_start(now).replace(day=1)


def _next_month(now: datetime) -> datetime:
    start = _month_start(now)
    return (start + timedelta(days=32)).replace(day=1)


@dataclass
class Admission:
    tenant: str
    reserved_tokens: int = 0
    reserved_micro_usd: int = 0
    token_key: str | None = None
    budget_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    settled: bool = False


class QuotaService:
    def __init__(self, *, backend: LimitBackend, registry: TenantRegistry, db: Database,
                 prefix: str = "atrium", warn_ratio: float = 0.8) -> None:
        self.backend = backend
        self.registry = registry
        self.db = db
        self.prefix = prefix
        self.warn_ratio = warn_ratio

    def _key(self, tenant: str, *parts: str) -> str:
        return ":".join([self.prefix, "quota", tenant, *parts])  # every bucket is prefixed with its tenant

    async def admit(self, *, tenant: str, subject: str, est_tokens: int = 0, est_cost_usd: float = 0.0,
                    now: datetime | None = None, count_request: bool = True) -> Admission:
        """`count_request=False`: an internal call made on behalf of a request that already took its slot
        (a follow-up's query rewrite): tokens and budget are reserved, the rate windows are not touched."""
        cfg = self.registry.get(tenant)
        quotas = cfg.quotas if cfg else None
        name = cfg.name if cfg else tenant
        now = now or datetime.now(UTC)
        windows: list[Window] = []
        reservations: list[Reservation] = []
        adm = Admission(tenant=tenant)
        if quotas and quotas.requests_per_minute and count_request:
            windows.append(Window(self._key(tenant, "rpm"), quotas.requests_per_minute, 60, "requests_per_minute"))
        if quotas and quotas.user_requests_per_minute and count_request:
            user = hashlib.sha256(subject.encode()).hexdigest()[:16]
            windows.append(Window(self._key(tenant, "user", user, "rpm"), quotas.user_requests_per_minute, 60,
                                  "user_requests_per_minute"))
        day, month = _day_start(now), _month_start(now)
        if quotas and quotas.tokens_per_day:
            adm.token_key = self._key(tenant, "tokens", day.strftime("%Y%m%d"))
            adm.reserved_tokens = max(0, int(est_tokens))
            reservations.append(Reservation(
                adm.token_key, int(quotas.tokens_per_day), adm.reserved_tokens, 2 * 86400, "tokens_per_day",
                seed=lambda: sum_usage_seed(self.db, tenant, day)[0]))
        if quotas and quotas.monthly_budget_usd:
            adm.budget_key = self._key(tenant, "usd", month.strftime("%Y%m"))
            adm.reserved_micro_usd = max(0, round(est_cost_usd * MICRO))
            reservations.append(Reservation(
                adm.budget_key, round(quotas.monthly_budget_usd * MICRO), adm.reserved_micro_usd, 40 * 86400,
                "monthly_budget_usd", seed=lambda: round(sum_usage_seed(self.db, tenant, month)[1] * MICRO)))
        if not windows and not reservations:
            return adm
        decision = await self.backend.admit(windows, reservations)
        if not decision.ok:
            raise self._refusal(name, decision.denied or "", decision.retry_after_s, quotas, now)
        if quotas and adm.token_key and quotas.tokens_per_day:
            used = decision.used.get(adm.token_key, 0)
            if used >= self.warn_ratio * quotas.tokens_per_day:
                adm.warnings.append(f"{name} has used {used / quotas.tokens_per_day:.0%} of today's "
                                    f"{quotas.tokens_per_day:,} tokens.")
        if quotas and adm.budget_key and quotas.monthly_budget_usd:
            used_usd = decision.used.get(adm.budget_key, 0) / MICRO
            if used_usd >= self.warn_ratio * quotas.monthly_budget_usd:
                adm.warnings.append(f"{name} has used {used_usd / quotas.monthly_budget_usd:.0%} of its monthly "
                                    f"budget of ${quotas.monthly_budget_usd:,.2f}.")
        return adm

    def _refusal(self, name: str, limit: str, retry_after: float, quotas, now: datetime) -> QuotaExceeded:
        if limit == "requests_per_minute":
            msg = (f"{name} has reached its limit of {quotas.requests_per_minute} requests per minute; "
                   f"try again in {max(1, round(retry_after))} s.")
        elif limit == "user_requests_per_minute":
            msg = (f"You have reached your limit of {quotas.user_requests_per_minute} requests per minute in "
                   f"{name}; try again in {max(1, round(retry_after))} s.")
        elif limit == "tokens_per_day":
            reset = _day_start(now) + timedelta(days=1)
            retry_after = (reset - now).total_seconds()
            msg = (f"{name} has used its {quotas.tokens_per_day:,} tokens for today; the limit resets at "
                   f"{reset:%Y-%m-%d %H:%M} UTC.")
        else:
            reset = _next_month(now)
            retry_after = (reset - now).total_seconds()
            msg = (f"{name} has used its monthly budget of ${quotas.monthly_budget_usd:,.2f}; it resets on "
                   f"{reset:%Y-%m-%d} (00:00 UTC). A tenant admin can raise it in config/tenants.yaml.")
        log.info("quota refused", extra={"tenant": name, "limit": limit, "retry_after": retry_after})
        return QuotaExceeded(msg, retry_after=int(retry_after + 0.999), limit=limit)

    async def settle(self, adm: Admission, *, tokens: int, cost_usd: float) -> None:
        """Replace the reservation with what the call really used."""
        if adm.settled:
            return
        adm.settled = True
        if adm.token_key:
            await self.backend.adjust(adm.token_key, int(tokens) - adm.reserved_tokens, 2 * 86400)
        if adm.budget_key:
            await self.backend.adjust(adm.budget_key, round(cost_usd * MICRO) - adm.reserved_micro_usd, 40 * 86400)

    async def release(self, adm: Admission) -> None:
        await self.settle(adm, tokens=0, cost_usd=0.0)


def sum_usage_seed(db: Database, tenant: str, since: datetime) -> tuple[int, float]:
    with db.session() as session:
        return sum_usage(session=session, tenant=tenant, since=since)
