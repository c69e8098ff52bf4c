"""The charts on /admin, drawn from governance/ops_charts.py's numbers with the console's chart code (ui/charts.py):
server-rendered SVG, no script, no CDN."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from backend.api.console_tabs import parse_day
from backend.container import Services
from backend.errors import AtriumError
from backend.governance.ops_charts import OpsSeries, day_range
from ui import charts

RANGES = (7, 30, 90)  # the quick choices; any from/to works too
# The cost charts' empty text: a tenant answered only by free models (the in-process one) has usage but no cost,
# and "No usage in this range" under a tokens chart with bars read as a contradiction.
METRIC_CHARTS = (("requests", "Requests per day", "requests", charts.plain, charts.bar_chart, charts.EMPTY),
                 ("total_tokens", "Tokens per day", "tokens", charts.plain, charts.bar_chart, charts.EMPTY),
                 ("cost_usd", "Cost per day (USD)", "USD", charts.usd, charts.line_chart,
                  charts.NO_COST))


def slug(model: str) -> str:
    """A model's name as part of an element id (`anthropic/claude-haiku-5-5` -> `anthropic_claude-haiku-5-5`)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model)


def percent(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".") + "%"  # 0.05% stays 0.05%, 50.00% is 50%


def _trim(value: float) -> str:
    return f"{value:,.1f}".removesuffix(".0")


def ms(value: float) -> str:
    """A latency on the value axis: seconds from 1,000 ms on (a "5,000 ms" label does not fit left of the axis and
    was cut to ",000 ms"), one decimal so the middle tick of 5 ms is 2.5 ms, not "2 ms"."""
    return f"{_trim(value / 1000)} s" if value >= 1000 else f"{_trim(value)} ms"


def chart_range(days: str | None, start: str | None, end: str | None) -> tuple:
    """(first, last) from the page's query; ValueError/AtriumError say what to fix."""
    today = datetime.now(UTC).date()
    n = None
    if days not in (None, ""):
        try:
            n = int(days)  # type: ignore[arg-type]
        except ValueError:
            raise ValueError(f"`days` must be a whole number of days, e.g. 30, not {days[:20]!r}") from None
    return day_range(parse_day(start), parse_day(end), n, today)


def admin_charts(services: Services, *, days: str | None, start: str | None, end: str | None,
                 sign_in_pages: tuple[str, ...]) -> dict:
    """The template's context for the charts section: the range, its error, and the charts by section."""
    today = datetime.now(UTC).date()
    quick = [(f"Last {n} days", n, (today - timedelta(days=n - 1)).isoformat(), today.isoformat()) for n in RANGES]
    try:
        first, last = chart_range(days, start, end)
        data = services.operators.charts(start=first, end=last, sign_in_pages=sign_in_pages)
    except (ValueError, AtriumError) as exc:
        return {"error": str(exc), "start": start or "", "end": end or "", "quick": quick, "days": days}
    out: dict = {"error": None, "start": first.isoformat(), "end": last.isoformat(), "quick": quick,
                 "days": str((last - first).days + 1), "data": data}
    if data is not None:
        out["charts"] = draw(data)
    return out


def draw(data: OpsSeries) -> dict:
    per_tenant = [
        (metric, title, [(name, draw_fn(data.per_tenant[t][metric], chart_id=f"chart-{metric}-{t}",
                                        title=f"{title}: {name}", unit=unit, fmt=fmt, empty=empty))
                         for t, name in data.tenants])
        for metric, title, unit, fmt, draw_fn, empty in METRIC_CHARTS]
    per_model = [
        (metric, title, [(model, draw_fn(data.per_model[model][metric], chart_id=f"chart-model-{metric}-{slug(model)}",
                                         title=f"{title}: {model}", unit=unit, fmt=fmt, empty=empty))
                         for model in data.models])
        for metric, title, unit, fmt, draw_fn, empty in METRIC_CHARTS]
    budgets = [(m["name"], round(100 * m["cost_usd"] / m["budget_usd"], 2)) for m in data.month if m["budget_usd"]]
    return {
        "per_tenant": per_tenant, "per_model": per_model,
        "budget": charts.bar_chart(budgets, chart_id="chart-budget", title="Cost this month, share of the budget",
                                   unit="of the monthly budget", fmt=percent, limit=charts.Limit(100, "Budget"),
                                   empty="No spending against a budget this month"),
        "latency": [
            ("p50", charts.line_chart(data.latency_p50, chart_id="chart-latency-p50", title="Latency p50 per day",
                                      fmt=ms, empty="No answers in this range")),
            ("p95", charts.line_chart(data.latency_p95, chart_id="chart-latency-p95", title="Latency p95 per day",
                                      fmt=ms, empty="No answers in this range"))],
        "errors": charts.line_chart(data.error_rate, chart_id="chart-error-rate",
                                    title="Error rate per day (failed model calls)", fmt=percent,
                                    empty="No failed model calls in this range"),
        "refusals": charts.bar_chart(data.refusals, chart_id="chart-refusals",
                                     title="Refusals per day (quotas and rate limits, 429)", unit="refusals",
                                     empty="No refusals in this range"),
        "denials": charts.bar_chart(data.denials, chart_id="chart-denials",
                                    title="Denials per day (401, 403 and others)", unit="denials",
                                    empty="No denials in this range"),
        "backlog": charts.bar_chart([(b["name"], b["active"]) for b in data.backlog], chart_id="chart-backlog",
                                    title="Ingestion jobs queued or running now, per tenant", unit="jobs",
                                    empty="No ingestion job queued or running"),
        "failed": charts.bar_chart([(b["name"], b["failed"]) for b in data.backlog], chart_id="chart-failed",
                                   title="Failed ingestion jobs now, per tenant", unit="jobs",
                                   empty="No failed ingestion job"),
        "usd": charts.usd,
    }
