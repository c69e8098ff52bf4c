"""The numbers behind the operators' charts on /admin, per day over a range: requests, tokens and cost per tenant
(from UsageService.report, i.e. the usage API's own numbers) and per model, each tenant's month against its budget,
latency (p50/p95 of the recorded latencies) and error rate, refusals (the chat turns a quota or rate limit
refused, and the audit log's 429s) and denials (the audit log), and the ingestion backlog now. Plain data; the
page draws it (backend/api/admin_charts.py with ui/charts.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from backend.db.engine import Database
from backend.db.repositories.documents import job_backlog
from backend.db.repositories.ops_series import failed_jobs, refusals_per_day, turn_health
from backend.errors import Invalid
from backend.governance.usage import UsageService
from backend.tenants import TenantRegistry

METRICS = ("requests", "total_tokens", "cost_usd")
Series = list[tuple[str, float]]


@dataclass(frozen=True)
class OpsSeries:
    start: date
    end: date
    tenants: list[tuple[str, str]]  # (id, name), served tenants in the registry's order
    per_tenant: dict[str, dict[str, Series]]  # tenant -> metric -> every day of the range
    models: list[str]  # every model with usage in the range, most tokens first
    per_model: dict[str, dict[str, Series]]  # model -> metric -> every day of the range, summed over the tenants
    month: list[dict]  # per tenant: cost this month (UTC) and its monthly budget (None: none set)
    latency_p50: Series
    latency_p95: Series
    error_rate: Series  # per cent of finished model calls
    refusals: Series  # 429s: quotas and rate limits
    denials: Series  # every other refusal
    backlog: list[dict]  # per tenant: active (queued or in ingestion), failed, oldest active job's age (s)


def days_before(day: date, n: int) -> date:
    """`day` minus n days, or the calendar's first day: a `to` in year 1 (a typo, or a probe) has no 30 days before
    it, and date arithmetic would raise OverflowError (a 500) instead of drawing what there is."""
    return day - timedelta(days=n) if (day - date.min).days >= n else date.min


def day_range(start: date | None, end: date | None, days: int | None, today: date) -> tuple[date, date]:
    """[start, end] from the page's controls: `days` (the last n days to today) or from/to (default: 30 days)."""
    if start is None and end is None and days is not None:
        if not 1 <= days <= 366:
            raise Invalid(f"`days` must be 1 to 366, not {days}", code="invalid_range")
        return today - timedelta(days=days - 1), today
    end = end or today
    start = start or days_before(end, 29)
    if start > end:
        raise Invalid(f"`from` ({start}) is after `to` ({end}): swap them", code="invalid_range")
    return start, end


def every_day(start: date, end: date, values: dict[str, float]) -> Series:
    out, day = [], start
    while day <= end:
        out.append((day.isoformat(), float(values.get(day.isoformat(), 0))))
        day += timedelta(days=1)
    return out


def ops_series(*, db: Database, usage: UsageService, registry: TenantRegistry, elsewhere: tuple[str, ...],
               start: date, end: date, sign_in_pages: tuple[str, ...]) -> OpsSeries:
    today = datetime.now(UTC).date()
    tenants = [(t.id, t.name) for t in registry.all()]
    per_tenant: dict[str, dict[str, Series]] = {}
    per_model: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: {m: defaultdict(float) for m in METRICS})
    month = []
    for t in registry.all():  # report() checks the range (366 days at most) and says what to fix
        days = {r["key"]: r for r in usage.report(tenant=t.id, start=start, end=end, group_by="day")["groups"]}
        per_tenant[t.id] = {m: every_day(start, end, {k: r[m] for k, r in days.items()}) for m in METRICS}
        for r in usage.per_day_and_model(tenant=t.id, start=start, end=end):
            for m in METRICS:
                per_model[r["model"]][m][r["day"]] += r[m]
        cost = usage.report(tenant=t.id, start=today.replace(day=1), end=today, group_by="day")["totals"]["cost_usd"]
        month.append({"tenant": t.id, "name": t.name, "cost_usd": cost, "budget_usd": t.quotas.monthly_budget_usd})
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    ids = [t for t, _ in tenants]
    with db.session() as session:
        health = turn_health(session=session, since=since, until=until, tenants=ids)
        refused = refusals_per_day(session=session, since=since, until=until, sign_in_pages=sign_in_pages,
                                   exclude_tenants=elsewhere)
        active = job_backlog(session=session, tenants=ids)
        failed = failed_jobs(session=session, tenants=ids)
    now = datetime.now(UTC)
    backlog = []
    for t, name in tenants:
        count, oldest = active[t]
        if oldest is not None and oldest.tzinfo is None:  # SQLite hands back naive UTC
            oldest = oldest.replace(tzinfo=UTC)
        backlog.append({"tenant": t, "name": name, "active": count, "failed": failed[t],
                        "oldest_s": max(0.0, (now - oldest).total_seconds()) if oldest else 0.0})
    return OpsSeries(
        start=start, end=end, tenants=tenants, per_tenant=per_tenant,
        models=sorted(per_model, key=lambda model: (-sum(per_model[model]["total_tokens"].values()), model)),
        per_model={model: {m: every_day(start, end, days) for m, days in v.items()} for model, v in per_model.items()},
        month=month,
        latency_p50=every_day(start, end, {d: h.get("p50", 0.0) for d, h in health.items()}),
        latency_p95=every_day(start, end, {d: h.get("p95", 0.0) for d, h in health.items()}),
        error_rate=every_day(start, end, {d: round(100 * h["errors"] / h["calls"], 2)
                                          for d, h in health.items() if h["calls"]}),
        # 429s: the audit log's (sign-in throttling) and the chat turns a quota or rate limit refused
        refusals=every_day(start, end, {d: refused.get(d, {}).get("refusals", 0) + health.get(d, {}).get("quota", 0)
                                        for d in set(refused) | set(health)}),
        denials=every_day(start, end, {d: r["denials"] for d, r in refused.items()}),
        backlog=backlog)
