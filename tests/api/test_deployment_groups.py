"""A process serves its deployment groups only (ATRIUM_DEPLOYMENT_GROUPS): on a process of `default`, every
/api/t/{tenant}/... route asked for finance (group `regulated`) with finance's own credentials — a member's
session, a bearer JWT, an API key — answers 421 naming `regulated` and its address, never a 5xx, never finance's
data, and each one is an audited denial; sales still works; anonymous callers learn nothing (401 first); an
unknown tenant keeps its 403; /api/me says where each membership is served.

The routes are the inventory of tests/api/test_isolation.py (checked complete against the app there and here).
"""

from __future__ import annotations

import json
import re

import pytest
from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.db.models import ApiKey, ChatTurn, KbDocument
from backend.db.repositories.audit import list_events
from tests.api.test_isolation import ROUTES, Route
from tests.auth.jwks_server import AUDIENCE
from tests.conftest import session_cookie_for, session_token

ELSEWHERE = "finance"
GROUP, URL = "regulated", "https://finance.atrium.example.com"
ALL_SCOPES = ["chat", "retrieval", "ingest", "prompts:read", "prompts:write", "admin"]


@pytest.fixture
def client(make_api_client, idp, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    return make_api_client(OIDC_ISSUER=idp.issuer, OIDC_API_AUDIENCE=AUDIENCE, OIDC_JWKS_MIN_REFRESH_S=0,
                           ATRIUM_DEPLOYMENT_GROUPS="default")


@pytest.fixture
def finance(client, idp) -> dict[str, dict]:
    """Finance's principals, each as strong as it gets in finance (its key made where finance is served: here,
    straight in the shared database)."""
    key = issue_key(db=client.app.state.services.db, tenant=ELSEWHERE, scopes=ALL_SCOPES, name="fin").token
    claims = {"sub": "fin-admin", "groups": ["finance", "finance-admins", "finance-editors"]}
    jwt = idp.token(sub="fin-admin", groups=claims["groups"])
    return {
        "session": {"cookies": {"access_token": session_token("fin-admin", claims)}},
        "api_key": {"headers": {"Authorization": f"Bearer {key}"}},
        "jwt": {"headers": {"Authorization": f"Bearer {jwt}"}},
    }


def _for_finance(route: Route) -> Route:
    """The inventory's sales request, aimed at finance's own assistant and knowledge base."""
    def swap(value):
        return json.loads(json.dumps(value).replace("sales-assistant", "finance-assistant")
                          .replace("sales/default", "finance/default")) if value is not None else None
    return Route(route.method, route.path, params=swap(route.params), json=swap(route.json), files=route.files,
                 data=route.data)


def _request(client, route: Route, tenant: str, creds: dict):
    headers = {**creds.get("headers", {}), "X-Tenant-ID": tenant}
    return client.request(route.method, route.url(tenant), headers=headers, cookies=creds.get("cookies"),
                          json=route.json, files=route.files, data=route.data)


def _denials(client) -> dict[int, int]:
    with client.app.state.services.db.session() as session:
        return {e.id: e.count for e in list_events(session=session, kind="denied", limit=100_000)}


def _new_denial(client, before: dict[int, int]):
    with client.app.state.services.db.session() as session:
        events = list_events(session=session, kind="denied", limit=100_000)
    touched = [e for e in events if e.count > before.get(e.id, 0)]
    return touched[0] if len(touched) == 1 else None


def test_the_inventory_is_every_tenant_route_of_the_app(client):
    declared = {(m.upper(), p) for p, ops in client.app.openapi()["paths"].items() if p.startswith("/api/t/{tenant}")
                for m in ops}
    assert declared == {(r.method, r.path.split("?")[0]) for r in ROUTES}


@pytest.mark.parametrize("route", [_for_finance(r) for r in ROUTES], ids=lambda r: f"{r.method} {r.path}")
def test_a_tenant_of_another_group_is_a_421_naming_it_and_audited(client, finance, route):
    for kind, creds in finance.items():
        before = _denials(client)
        r = _request(client, route, ELSEWHERE, creds)
        what = f"{kind}: {route.method} {route.url(ELSEWHERE)}"
        assert r.status_code == 421, f"{what} -> {r.status_code} {r.text[:300]}"
        body = r.json()
        if re.match(r"^/api/t/[^/]+/v1/", route.path.format(tenant=ELSEWHERE, **route.params)):
            error = body["error"]  # OpenAI's shape, with where to go beside its four fields
            assert (error["code"], error["type"]) == ("served_elsewhere", "invalid_request_error"), what
            fields, message = error, error["message"]
        else:
            assert body["error"] == "served_elsewhere", what
            fields, message = body, body["detail"]
        assert (fields["tenant"], fields["deployment_group"], fields["public_url"]) == (ELSEWHERE, GROUP, URL), what
        assert f"'{GROUP}'" in message and URL in message and "(default)" in message, what
        denial = _new_denial(client, before)
        assert denial is not None, what
        assert (denial.status, denial.reason, denial.tenant) == (421, "served_elsewhere", ELSEWHERE), what
        assert denial.route == route.url(ELSEWHERE).split("?")[0] and denial.subject, what


def test_nothing_of_finance_is_read_or_written_and_sales_still_works(client, finance):
    for route in ROUTES:
        for creds in finance.values():
            assert _request(client, _for_finance(route), ELSEWHERE, creds).status_code == 421
    services = client.app.state.services
    with services.db.session() as session:
        assert list(session.exec(select(ChatTurn))) == []
        assert list(session.exec(select(KbDocument))) == []
        assert [k.name for k in session.exec(select(ApiKey))] == ["fin"]  # only the fixture's
    carol = session_cookie_for("carol")  # a sales admin: served here
    assert client.get("/api/t/sales/documents", cookies=carol).status_code == 200
    assert client.get("/api/t/sales/keys", cookies=carol).status_code == 200
    assert client.get("/api/t/sales/v1/models", cookies=carol).status_code == 200


def test_anonymous_learns_nothing_and_unknown_tenants_keep_their_answer(client, finance):
    r = client.get(f"/api/t/{ELSEWHERE}/documents")
    assert (r.status_code, r.json()["error"]) == (401, "not_authenticated") and GROUP not in r.text
    # A member of sales only, asking for finance: not theirs, as on a process that serves every group.
    r = client.get(f"/api/t/{ELSEWHERE}/documents", cookies=session_cookie_for("carol"))
    assert (r.status_code, r.json()["error"]) == (403, "tenant_mismatch") and URL not in r.text
    for creds in finance.values():
        r = _request(client, Route("GET", "/api/t/{tenant}/documents"), "marketing", creds)
        assert (r.status_code, r.json()["error"]) == (403, "tenant_mismatch"), r.text


def test_me_says_where_each_membership_is_served(client):
    me = client.get("/api/me", cookies=session_cookie_for("maria")).json()  # sales and finance
    assert me["tenants"] == {"sales": ["member"]}
    assert me["memberships"] == {
        "sales": {"served_here": True, "deployment_group": "default", "public_url": "https://atrium.example.com"},
        "finance": {"served_here": False, "deployment_group": GROUP, "public_url": URL}}
    assert me["assistants"] == {"sales": ["sales-assistant", "deal-desk"]} and "no_access" not in me
    fiona = client.get("/api/me", cookies=session_cookie_for("fiona")).json()  # finance only
    assert fiona["tenants"] == {}
    assert fiona["no_access"] == f"your departments' assistants are at another address: Finance at {URL}"


def test_operators_see_only_the_served_tenants(client, finance):
    root = session_cookie_for("root")
    _request(client, Route("GET", "/api/t/{tenant}/documents"), ELSEWHERE, finance["session"])  # a finance event
    assert [t["id"] for t in client.get("/api/admin/tenants", cookies=root).json()] == ["sales", "engineering"]
    events = client.get("/api/admin/audit?limit=1000", cookies=root).json()
    assert events and all(e["tenant"] != ELSEWHERE for e in events)
    before = _denials(client)
    r = client.get(f"/api/admin/audit?tenant={ELSEWHERE}", cookies=root)
    assert (r.status_code, r.json()["error"], r.json()["deployment_group"]) == (421, "served_elsewhere", GROUP)
    assert _new_denial(client, before).reason == "served_elsewhere"
    page = client.get("/admin", cookies=root)
    assert page.status_code == 200 and "Sales" in page.text and "Finance" not in page.text


def test_the_studio_points_to_the_group_that_edits_finance(client):
    frank = session_cookie_for("frank")  # a finance prompt editor
    r = client.get(f"/studio?tenant={ELSEWHERE}", cookies=frank)
    assert r.status_code == 421 and f"{URL}/studio?tenant={ELSEWHERE}" in r.text
    r = client.get("/studio", cookies=frank)  # no department of frank's is served here
    assert r.status_code == 403 and URL in r.text and "not a member of any department" not in r.text
