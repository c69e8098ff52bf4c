"""/admin's charts and the tenant admins' console attacked (issue 18): ranges at the calendar's edges are drawn or a
400 that says why (never a 500), what an outsider or operator types and the models' names come back as text in the
page and its SVG, and a tenant admin is refused the charts, audited."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.db.models import AuditEvent, ChatTurn
from tests.conftest import session_cookie_for


@pytest.fixture
def metered(make_api_client, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    return make_api_client(ATRIUM_METRICS_TOKEN="scrape-" + "att4ck" * 4, ATRIUM_INGEST_WORKER="false")


@pytest.mark.parametrize("query", ["to=0001-01-05", "to=0001-01-01", "from=9999-12-01&to=9999-12-31",
                                   "to=9999-12-31", "from=0001-01-01&to=9999-12-30", "days=366&to=0001-01-01",
                                   "from=2026-13-01", "days=-5", "days=" + "9" * 5000, "from=" + "2" * 40,
                                   "days=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
                                   "from=%22%3E%3Cscript%3Ealert(1)%3C/script%3E&to=x"])
def test_a_chart_range_at_the_calendars_edge_is_drawn_or_a_400_that_says_why(metered, query):
    r = metered.get(f"/admin?{query}", cookies=session_cookie_for("root"))
    assert r.status_code in (200, 400), (query, r.status_code)
    if r.status_code == 400:
        assert 'class="error' in r.text or "must" in r.text
    assert "<script>alert" not in r.text  # what the operator typed comes back as text


def test_a_path_an_outsider_chose_is_text_in_the_operators_denials(metered):
    """An anonymous request's path is stored in the audit log (its route) and listed on /admin."""
    for evil in ("/api/t/sales/<img src=x onerror=alert(1)>", "/api/t/<img src=x onerror=alert(1)>/usage",
                 "/api/t/<img src=x onerror=alert(1)>/v1/models"):
        assert metered.get(evil).status_code in (401, 404)
    assert metered.get("/api/t/sales/usage", headers={"X-Tenant-ID": "<script>alert(2)</script>"}).status_code == 401
    page = metered.get("/admin?days=7", cookies=session_cookie_for("root")).text
    assert "<img src=x" not in page and "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # listed, as text


@pytest.mark.parametrize("page", ["usage?to=0001-01-05", "usage?to=0001-01-01", "audit?to=9999-12-31",
                                  "audit?from=9999-12-31&to=9999-12-31", "usage?from=9999-12-31&to=9999-12-31"])
def test_a_console_range_at_the_calendars_edge_is_not_a_500(metered, page):
    """The tenant admins' console shares the chart code and its date fields."""
    r = metered.get(f"/console/sales/{page}", cookies=session_cookie_for("carol"))
    assert r.status_code in (200, 400), (page, r.status_code)


def test_model_names_are_text_in_the_charts_svg(metered):
    services = metered.app.state.services
    evil = '"><script>alert(1)</script><svg onload=alert(2)>'
    with services.db.session() as s:
        s.add(ChatTurn(tenant="sales", subject="x", model=evil, created_at=datetime.now(UTC), prompt_tokens=10,
                       completion_tokens=5, cost_usd=0.01, outcome="ok", latency_ms=10))
        s.commit()
    r = metered.get("/admin?days=7", cookies=session_cookie_for("root"))
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "<svg onload" not in r.text and 'id="chart-model-' in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text  # shown, as text


def test_the_charts_are_refused_to_a_tenant_admin_and_the_refusal_is_audited(metered):
    r = metered.get("/admin?days=7", cookies=session_cookie_for("carol"))
    assert r.status_code == 403 and "chart-" not in r.text
    with metered.app.state.services.db.session() as s:
        rows = s.query(AuditEvent).filter(AuditEvent.kind == "denied", AuditEvent.subject == "carol").all()
    assert [(r.route, r.status) for r in rows] == [("/admin", 403)]
