"""The charts on /admin, in-process: seeded usage rows and audit events for two tenants, and the numbers the page
draws (each bar's data-value) are the usage API's own (the tenant admins' GET /api/t/{tenant}/usage); latency,
error rate, refusals, denials and the ingestion backlog are counted as seeded; a bad range is a 400 that says what
to fix; a tenant admin is still refused the page."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from backend.api.admin_charts import ms, slug
from backend.db.models import AuditEvent, ChatTurn, KbDocument

TODAY = datetime.now(UTC).date()
D1, D2 = TODAY - timedelta(days=3), TODAY - timedelta(days=1)
OLD = TODAY - timedelta(days=20)  # outside a 7-day range


def at(day, hour=10):  # noqa: ANN001, ANN202
    return datetime.combine(day, time(hour), tzinfo=UTC)


@pytest.fixture
def seeded(api_services):
    turns = [  # tenant, day, model, prompt, completion, cost, outcome, latency
        ("sales", D1, "anthropic/claude-haiku-5-5", 100, 20, 0.01, "ok", 100),
        ("sales", D1, "anthropic/claude-haiku-5-5", 200, 40, 0.02, "ok", 300),
        ("sales", D2, "anthropic/claude-sonnet-5-5", 1000, 100, 0.5, "ok", 900),
        ("sales", D2, "anthropic/claude-sonnet-5-5", 0, 0, 0.0, "error", 0),
        ("sales", OLD, "anthropic/claude-sonnet-5-5", 5000, 500, 3.0, "ok", 50),
        ("finance", D2, "anthropic/claude-haiku-5-5", 10, 5, 0.001, "ok", 200),
        ("finance", D2, None, 0, 0, 0.0, "quota", 0),
    ]
    with api_services.db.session() as s:
        for tenant, day, model, pt, ct, cost, outcome, latency in turns:
            s.add(ChatTurn(tenant=tenant, subject="x", model=model, created_at=at(day), prompt_tokens=pt,
                           completion_tokens=ct, cost_usd=cost, outcome=outcome, latency_ms=latency))
        for tenant, day, status, reason, count in (("sales", D1, 429, "tokens_per_day", 3),
                                                   ("finance", D2, 429, "requests_per_minute", 1),
                                                   ("finance", D2, 403, "tenant_mismatch", 2)):
            s.add(AuditEvent(kind="denied", tenant=tenant, subject="x", route="/api/t/x/chat", status=status,
                             reason=reason, count=count, created_at=at(day)))
        for i, (tenant, status) in enumerate((("sales", "queued"), ("sales", "embedding"), ("sales", "failed"),
                                              ("finance", "failed"), ("finance", "ready"))):
            s.add(KbDocument(id=f"doc-{i}", tenant=tenant, title="t", filename="t.txt", content_type="text",
                             content_hash=f"h{i}", status=status))
        s.commit()


def bars(page: str, chart_id: str) -> dict[str, float]:
    svg = page.split(f'id="{chart_id}"')[1].split("</svg>")[0]
    return {k: float(v) for k, v in re.findall(r'data-key="([^"]*)" data-value="([^"]*)"', svg)}


def sql_per_day_and_model(services, start, end) -> dict[str, dict[str, dict[str, float]]]:  # noqa: ANN001
    """model -> day -> requests, total_tokens, cost_usd over every tenant's turns, by SQL of the test's own."""
    query = sa.text(
        "SELECT date(created_at), coalesce(nullif(model, ''), '(no model call)'), "
        "sum(CASE WHEN channel = 'internal' THEN 0 ELSE 1 END), sum(prompt_tokens + completion_tokens), "
        "sum(cost_usd) FROM chat_turn WHERE date(created_at) >= :start AND date(created_at) <= :end "
        "AND outcome IN ('ok', 'cancelled', 'interrupted') GROUP BY 1, 2")
    out: dict[str, dict[str, dict[str, float]]] = {}
    with services.db.engine.connect() as conn:
        for day, model, requests, tokens, cost in conn.execute(query, {"start": str(start), "end": str(end)}):
            out.setdefault(model, {})[str(day)] = {"requests": requests, "total_tokens": tokens, "cost_usd": cost}
    return out


def test_the_charts_draw_the_usage_apis_numbers(api_client, api_services, login_as, seeded):
    root = login_as("root")
    r = api_client.get("/admin?days=7", cookies=root)
    assert r.status_code == 200, r.text
    page = html.unescape(r.text)
    start = (TODAY - timedelta(days=6)).isoformat()
    assert f"{start} to {TODAY.isoformat()}" in page
    for tenant, admin in (("sales", "carol"), ("finance", "fiona")):
        api = api_client.get(f"/api/t/{tenant}/usage?from={start}&to={TODAY}&group_by=day",
                             cookies=login_as(admin)).json()
        by_day = {g["key"]: g for g in api["groups"]}
        for metric in ("requests", "total_tokens", "cost_usd"):
            drawn = bars(page, f"chart-{metric}-{tenant}")
            assert len(drawn) == 7  # every day of the range, 0 when none
            assert {k: v for k, v in drawn.items() if v} == \
                {k: pytest.approx(g[metric]) for k, g in by_day.items() if g[metric]}, (tenant, metric)
    # Per model, per day, summed over the tenants: the numbers of a query of our own over the turns (the usage
    # API's definition: answered, cancelled or interrupted turns; requests leave internal calls out).
    per_model = sql_per_day_and_model(api_services, start, TODAY)
    assert set(per_model) == {"anthropic/claude-haiku-5-5", "anthropic/claude-sonnet-5-5"}
    for model, days in per_model.items():
        for metric in ("requests", "total_tokens", "cost_usd"):
            drawn = bars(page, f"chart-model-{metric}-{slug(model)}")
            assert len(drawn) == 7, (model, metric)
            assert {k: v for k, v in drawn.items() if v} == \
                {d: pytest.approx(row[metric]) for d, row in days.items() if row[metric]}, (model, metric)
    # The days apart: haiku on D1 (sales, 2 calls) and D2 (finance), sonnet on D2 only (its error not counted).
    assert bars(page, "chart-model-total_tokens-anthropic_claude-haiku-5-5")[D1.isoformat()] == 360
    assert bars(page, "chart-model-total_tokens-anthropic_claude-haiku-5-5")[D2.isoformat()] == 15
    assert bars(page, "chart-model-requests-anthropic_claude-sonnet-5-5")[D2.isoformat()] == 1
    assert bars(page, "chart-model-requests-anthropic_claude-sonnet-5-5")[D1.isoformat()] == 0

    # Latency (answered turns with a recorded latency), error rate, refusals (429: quota-refused turns and the audit
    # log's) and denials from the audit log.
    assert bars(page, "chart-latency-p50")[D1.isoformat()] == 100
    assert bars(page, "chart-latency-p95")[D1.isoformat()] == 300
    assert bars(page, "chart-latency-p50")[D2.isoformat()] == 200  # 900 (sales) and 200 (finance)
    # 1 error of 3 model calls: finance's quota-refused turn called no model, so it is no call that could fail
    assert bars(page, "chart-error-rate")[D2.isoformat()] == round(100 / 3, 2)
    refusals, denials = bars(page, "chart-refusals"), bars(page, "chart-denials")
    # D2: the audited 429 and finance's turn a quota refused (a usage row with outcome `quota`, never audited)
    assert (refusals[D1.isoformat()], refusals[D2.isoformat()]) == (3, 2)
    assert denials[D2.isoformat()] == 2 and sum(denials.values()) == 2
    # The backlog now, and each tenant's month against its budget.
    assert bars(page, "chart-backlog")["Sales"] == 2 and bars(page, "chart-failed") == pytest.approx(
        {**{k: 0 for k in bars(page, "chart-failed")}, "Sales": 1, "Finance": 1})
    month = page.split('id="budget-table"')[1].split("</table>")[0]
    sales_month = api_client.get(f"/api/t/sales/usage?from={TODAY.replace(day=1)}&to={TODAY}",
                                 cookies=login_as("carol")).json()["totals"]["cost_usd"]
    assert re.search(rf'data-tenant="sales">.*?data-value="{re.escape(str(sales_month))}"', month, re.S)


def test_the_range_control(api_client, login_as, seeded):
    root = login_as("root")
    page = html.unescape(api_client.get(f"/admin?from={D1}&to={D2}", cookies=root).text)
    assert len(bars(page, "chart-requests-sales")) == 3
    assert bars(page, "chart-requests-sales") == {D1.isoformat(): 2, (D1 + timedelta(days=1)).isoformat(): 0,
                                                  D2.isoformat(): 1}
    assert len(bars(api_client.get("/admin?days=90", cookies=root).text, "chart-requests-sales")) == 90
    assert len(bars(api_client.get("/admin", cookies=root).text, "chart-requests-sales")) == 30  # the default
    for query, says in (("from=2026-02-10&to=2026-02-01", "is after"), ("days=abc", "whole number"),
                        ("from=yesterday", "YYYY-MM-DD"), ("days=1000", "1 to 366")):
        r = api_client.get(f"/admin?{query}", cookies=root)
        assert r.status_code == 400 and says in html.unescape(r.text), query
        assert 'id="range-error"' in r.text


def test_a_tenant_admin_is_still_refused(api_client, login_as):
    r = api_client.get("/admin?days=7", cookies=login_as("carol"))
    assert r.status_code == 403 and "chart-" not in r.text


def test_latency_labels_fit_left_of_the_axis():
    # The axis has room for about 7 characters; "5,000 ms" showed as ",000 ms", and 2.5 ms was rounded to "2 ms".
    assert [ms(v) for v in (0, 2.5, 5, 250, 999, 1000, 2500, 5000, 12500)] == \
        ["0 ms", "2.5 ms", "5 ms", "250 ms", "999 ms", "1 s", "2.5 s", "5 s", "12.5 s"]


def test_usage_without_cost_says_no_cost_not_no_usage(api_client, api_services, login_as):
    # the demo's in-process model is free: its tenant has requests and tokens but no cost, and "No usage in this
    # range" under bars of tokens read as a contradiction
    with api_services.db.session() as s:
        s.add(ChatTurn(tenant="finance", subject="x", model="local/smollm2", created_at=at(D1), prompt_tokens=10,
                       completion_tokens=5, cost_usd=0.0, outcome="ok", latency_ms=100))
        s.commit()
    page = html.unescape(api_client.get("/admin?days=7", cookies=login_as("root")).text)
    assert bars(page, "chart-total_tokens-finance")[D1.isoformat()] == 15

    def empty_text(chart_id: str) -> list[str]:
        svg = page.split(f'id="{chart_id}"')[1].split("</svg>")[0]
        return re.findall(r'class="chart-empty"[^>]*>([^<]*)<', svg)

    assert empty_text("chart-total_tokens-finance") == []
    assert empty_text("chart-cost_usd-finance") == ["No cost in this range"]
    assert empty_text("chart-model-cost_usd-local_smollm2") == ["No cost in this range"]
    assert empty_text("chart-requests-sales") == ["No usage in this range"]
