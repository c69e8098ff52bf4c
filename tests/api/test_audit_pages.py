"""GET /api/t/{t}/audit and /api/admin/audit reach older events: `before` pages back (X-Next-Before names the
next page), `from`/`to` bound the time; an unknown tenant is a 404; and every /api route refuses a query
parameter it does not take instead of ignoring it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def test_audit_pages_back_and_filters_by_time(api_client, login_as):
    services = api_client.app.state.services
    for i in range(7):
        services.audit.record("denied", subject=f"probe{i}", tenant="sales", route="/x", status=403, reason="test")
    carol = {"cookies": login_as("carol")}
    first = api_client.get("/api/t/sales/audit?kind=denied&limit=3", **carol)
    assert first.status_code == 200 and [e["subject"] for e in first.json()] == ["probe6", "probe5", "probe4"]
    cursor = first.headers["x-next-before"]
    second = api_client.get(f"/api/t/sales/audit?kind=denied&limit=3&before={cursor}", **carol).json()
    assert [e["subject"] for e in second] == ["probe3", "probe2", "probe1"]
    last = api_client.get(f"/api/t/sales/audit?kind=denied&limit=3&before={second[-1]['id']}", **carol)
    assert [e["subject"] for e in last.json()] == ["probe0"] and "x-next-before" not in last.headers

    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert api_client.get(f"/api/t/sales/audit?from={future}", **carol).json() == []
    assert len(api_client.get(f"/api/t/sales/audit?kind=denied&to={future}", **carol).json()) == 7

    root = {"cookies": login_as("root")}
    r = api_client.get("/api/admin/audit?tenant=nosuch", **root)
    assert (r.status_code, r.json()["error"]) == (404, "tenant_not_found") and "sales" in r.json()["detail"]
    assert len(api_client.get("/api/admin/audit?tenant=sales&kind=denied&limit=2", **root).json()) == 2


def test_an_unknown_query_parameter_is_refused_naming_what_the_route_takes(api_client, login_as):
    carol = {"cookies": login_as("carol")}
    r = api_client.get("/api/t/sales/audit?since=2026-12-01T00:00:00", **carol)
    assert (r.status_code, r.json()["error"]) == (422, "unknown_query_parameter")
    assert r.json()["detail"] == ("unknown query parameter 'since' "
                                  "(this route takes: before, from, kind, limit, subject, to)")
    r = api_client.get("/api/t/sales/usage?group_by=day&form=2026-11-01", **carol)
    assert r.status_code == 422 and "'form'" in r.json()["detail"]
    r = api_client.post("/api/t/sales/v1/chat/completions?stream=true", headers={"X-Tenant-ID": "sales"},
                        json={"model": "local", "messages": [{"role": "user", "content": "hi"}]}, **carol)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_query_parameter"
