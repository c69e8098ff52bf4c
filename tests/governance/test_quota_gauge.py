"""atrium_quota_used_ratio is read when scraped, on both quota backends: a tenant that called yesterday and has
been idle since midnight shows today's share of its daily tokens (0, not yesterday's 70%) and this month's share
of its budget; a counter not made yet (no call this period) reads what the admission would seed it with (SQL);
tenants that never called show 0. Parsed with Prometheus' own parser."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.governance.metrics import PrometheusMetrics
from backend.governance.quota_gauge import quota_used_now
from tests.governance.test_quotas import add_turn, db, quota_service  # noqa: F401 - db is a fixture

YESTERDAY = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
TODAY = YESTERDAY + timedelta(hours=1)  # 2026-11-25 00:30: a new day, the same month


def scrape(metrics: PrometheusMetrics) -> dict[tuple[str, str], float]:
    body, _ = metrics.render()
    return {(s.labels["tenant"], s.labels["limit"]): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples if s.name == "atrium_quota_used_ratio"}


def test_an_idle_tenants_share_is_current_at_each_scrape(tmp_path, db, make_limits):  # noqa: F811
    add_turn(db, tokens=600, cost=2.0, when=YESTERDAY)  # what SQL has before the counters exist
    svc = quota_service(tmp_path, db, make_limits, tokens_per_day=1000, monthly_budget_usd=10)
    adm = asyncio.run(svc.admit(tenant="sales", subject="alice", est_tokens=100, est_cost_usd=0.5, now=YESTERDAY))
    asyncio.run(svc.settle(adm, tokens=100, cost_usd=0.5))  # the counters: 700 tokens, 2.50 USD
    clock = {"now": YESTERDAY}
    metrics = PrometheusMetrics(process=False)
    metrics.watch_quota(lambda: quota_used_now(svc, now=clock["now"]))

    before = scrape(metrics)
    assert before[("sales", "tokens_per_day")] == pytest.approx(0.7)
    assert before[("sales", "monthly_budget_usd")] == pytest.approx(0.25)
    assert before[("engineering", "tokens_per_day")] == 0 and before[("finance", "monthly_budget_usd")] == 0

    clock["now"] = TODAY  # nobody called since midnight: the scrape alone moves the gauge
    after = scrape(metrics)
    assert after[("sales", "tokens_per_day")] == 0
    assert after[("sales", "monthly_budget_usd")] == pytest.approx(0.25)  # the month's counter, not SQL's 2.00

    add_turn(db, tokens=300, cost=0.1, when=TODAY)  # e.g. written by a replica whose counter was flushed
    assert scrape(metrics)[("sales", "tokens_per_day")] == pytest.approx(0.3)  # no counter today: SQL's figure


def test_a_counter_that_cannot_be_read_costs_that_gauge_not_the_scrape():
    metrics = PrometheusMetrics(process=False)

    def broken() -> dict:
        raise ConnectionError("Redis is away")

    metrics.watch_quota(broken)
    metrics.quota_refusal(tenant="sales", limit="tokens_per_day")
    body, _ = metrics.render()
    names = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert "atrium_quota_refusals_total" in names and "atrium_quota_used_ratio" not in names
