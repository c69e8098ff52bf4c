"""atrium_quota_used_ratio as of the scrape, not of each tenant's last call: a tenant idle since midnight shows
today's tokens (none) rather than yesterday's share, until it calls again.

Read when scraped (governance/metrics.py, `watch_quota`): the tenant-level counters the admission itself checks
(Redis or the process's memory; one MGET for every served tenant), and for a counter that does not exist yet (no
call this period, or Redis was flushed) the figure the admission would seed it with, from SQL. What the counters
hold is what was used; reservations of answers in progress are not counted (as at admission).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from backend.governance.allowances import day_start, month_id, month_start
from backend.governance.quotas import MICRO, QuotaService, sum_usage_seed


def quota_used_now(quotas: QuotaService, *, now: datetime | None = None) -> dict[tuple[str, str], float]:
    """(tenant, limit) -> share of the served tenants' daily tokens and monthly budget used now (0 to 1 and
    beyond); limits that are unset or 0 (a blocked tenant) are left out."""
    now = now or datetime.now(UTC)
    day, month = day_start(now), month_start(now)
    wanted: list[tuple[str, str, str, float, Callable[[], float]]] = []  # tenant, limit, key, maximum, seed
    for cfg in quotas.registry.all():
        tenant, q = cfg.id, cfg.quotas

        def tokens(tenant: str = tenant) -> float:
            return sum_usage_seed(quotas.db, tenant, day)[0]

        def micro_usd(tenant: str = tenant) -> float:
            return round(sum_usage_seed(quotas.db, tenant, month)[1] * MICRO)

        if q.tokens_per_day:
            wanted.append((tenant, "tokens_per_day", quotas.counters.key(tenant, "tokens", day.strftime("%Y%m%d")),
                           float(q.tokens_per_day), tokens))
        if q.monthly_budget_usd:
            wanted.append((tenant, "monthly_budget_usd", quotas.counters.key(tenant, "usd", month_id(now)),
                           q.monthly_budget_usd * MICRO, micro_usd))
    values = quotas.backend.get_many_sync([key for _, _, key, _, _ in wanted])
    return {(tenant, limit): (seed() if value is None else value) / maximum
            for (tenant, limit, _, maximum, seed), value in zip(wanted, values, strict=True)}
