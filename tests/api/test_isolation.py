"""Tenant isolation for every /api/t/{tenant}/... route: another tenant's principal — session, API key or
bearer JWT — is refused with 403 and an audit event, whether it names the victim tenant in the URL, forges
the X-Tenant-ID header, or both.

ROUTES is the inventory of tenant routes. EVERY new /api/t/{tenant}/... route must get an entry here
(test_inventory_is_complete fails otherwise). Give the path template exactly as declared, concrete values
for its other path parameters, and a realistic request body, so the refusal cannot hinge on a 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from backend.db.models import ChatTurn, EvalRun
from backend.db.repositories.audit import list_events
from tests.auth.jwks_server import AUDIENCE
from tests.conftest import _SCRUB, AUTH_SECRET, TEST_TODAY, session_cookie_for

VICTIM = "sales"
ATTACKER_TENANT = "engineering"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the template, e.g. "/api/t/{tenant}/keys/{key_id}"
    params: dict[str, str] = field(default_factory=dict)  # values for the other path parameters
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None

    def url(self, tenant: str) -> str:
        return self.path.format(tenant=tenant, **self.params)


ROUTES: list[Route] = [
    Route("POST", "/api/t/{tenant}/chat", json={"assistant": "sales-assistant", "message": "What is the cap?"}),
    Route("GET", "/api/t/{tenant}/keys"),
    Route("POST", "/api/t/{tenant}/keys", json={"name": "stolen", "scopes": ["admin"]}),
    Route("DELETE", "/api/t/{tenant}/keys/{key_id}", params={"key_id": "0123456789ab"}),
    Route("GET", "/api/t/{tenant}/audit"),
    Route("GET", "/api/t/{tenant}/feedback"),
    Route("POST", "/api/t/{tenant}/dify/chat-messages", json={"query": "hi", "response_mode": "blocking"}),
    Route("GET", "/api/t/{tenant}/prompts"),
    Route("GET", "/api/t/{tenant}/prompts/{assistant}", params={"assistant": "sales-assistant"}),
    Route("GET", "/api/t/{tenant}/prompts/{assistant}/versions/{version}",
          params={"assistant": "sales-assistant", "version": "1"}),
    Route("POST", "/api/t/{tenant}/prompts/{assistant}/versions", params={"assistant": "sales-assistant"},
          json={"body": "You are evil.", "config": {}, "message": "hijack", "base_version": 1}),
    Route("PUT", "/api/t/{tenant}/prompts/{assistant}/labels/{label}",
          params={"assistant": "sales-assistant", "label": "production"}, json={"version": 1}),
    Route("GET", "/api/t/{tenant}/prompts/{assistant}/diff?from=1&to=1", params={"assistant": "sales-assistant"}),
    Route("POST", "/api/t/{tenant}/prompts/{assistant}/preview", params={"assistant": "sales-assistant"},
          json={"body": "x", "config": {}, "base_version": 1}),
    Route("POST", "/api/t/{tenant}/prompts/{assistant}/try", params={"assistant": "sales-assistant"},
          json={"question": "What is the discount cap?"}),
    Route("GET", "/api/t/{tenant}/v1/models"),
    Route("GET", "/api/t/{tenant}/v1/models/{model_id}", params={"model_id": "sales-assistant"}),
    Route("POST", "/api/t/{tenant}/v1/chat/completions",
          json={"model": "sales-assistant", "messages": [{"role": "user", "content": "What is the cap?"}]}),
    Route("GET", "/api/t/{tenant}/usage?group_by=model"),
    Route("POST", "/api/t/{tenant}/usage/allowances", json={"subject": "alice", "monthly_budget_usd": 500}),
    # knowledge base (issue 4)
    Route("POST", "/api/t/{tenant}/documents",
          files={"files": ("notes.md", b"# Notes\n\nPlanted text.", "text/markdown")}, data={"kb": "default"}),
    Route("GET", "/api/t/{tenant}/documents"),
    Route("GET", "/api/t/{tenant}/documents/{document_id}", params={"document_id": "0123456789abcdef"}),
    Route("DELETE", "/api/t/{tenant}/documents/{document_id}", params={"document_id": "0123456789abcdef"}),
    Route("GET", "/api/t/{tenant}/knowledge-bases"),
    Route("POST", "/api/t/{tenant}/reindex", json={"include_failed": True}),  # the console's re-index (issue 22)
    Route("POST", "/api/t/{tenant}/documents/{document_id}/reindex", params={"document_id": "0123456789abcdef"}),
    Route("POST", "/api/t/{tenant}/search", json={"query": "What is the discount cap?", "top_k": 5}),
    Route("POST", "/api/t/{tenant}/dify/retrieval",
          json={"knowledge_id": "sales/default", "query": "What is the discount cap?",
                "retrieval_setting": {"top_k": 5, "score_threshold": 0.0}}),
    # evaluations (issue 19)
    Route("GET", "/api/t/{tenant}/evals/{assistant}/cases", params={"assistant": "sales-assistant"}),
    Route("POST", "/api/t/{tenant}/evals/{assistant}/cases", params={"assistant": "sales-assistant"},
          json={"question": "What is the discount cap?", "facts": ["0%"]}),
    Route("GET", "/api/t/{tenant}/evals/{assistant}/cases/export", params={"assistant": "sales-assistant"}),
    Route("POST", "/api/t/{tenant}/evals/{assistant}/cases/import", params={"assistant": "sales-assistant"},
          json={"yaml": "cases: [{question: planted, facts: [x]}]"}),
    Route("GET", "/api/t/{tenant}/evals/{assistant}/cases/from-feedback?turn_id=1",
          params={"assistant": "sales-assistant"}),
    Route("POST", "/api/t/{tenant}/evals/{assistant}/cases/from-feedback", params={"assistant": "sales-assistant"},
          json={"turn_id": 1}),
    Route("PUT", "/api/t/{tenant}/evals/{assistant}/cases/{case_id}",
          params={"assistant": "sales-assistant", "case_id": "rep-discount-limit"},
          json={"question": "hijacked", "facts": ["x"]}),
    Route("DELETE", "/api/t/{tenant}/evals/{assistant}/cases/{case_id}",
          params={"assistant": "sales-assistant", "case_id": "rep-discount-limit"}),
    Route("POST", "/api/t/{tenant}/evals/{assistant}/runs", params={"assistant": "sales-assistant"},
          json={"version": 1}),
    Route("GET", "/api/t/{tenant}/evals/{assistant}/runs", params={"assistant": "sales-assistant"}),
    Route("GET", "/api/t/{tenant}/evals/{assistant}/runs/{run_id}",
          params={"assistant": "sales-assistant", "run_id": "0123456789abcdef"}),
    Route("POST", "/api/t/{tenant}/evals/{assistant}/runs/{run_id}/resume",
          params={"assistant": "sales-assistant", "run_id": "0123456789abcdef"}),
    Route("POST", "/api/t/{tenant}/evals/{assistant}/runs/{run_id}/cancel",
          params={"assistant": "sales-assistant", "run_id": "0123456789abcdef"}),
    Route("GET", "/api/t/{tenant}/evals/{assistant}/compare?a=0123456789abcdef&b=0123456789abcdef",
          params={"assistant": "sales-assistant"}),
    Route("GET", "/api/t/{tenant}/evals/{assistant}/gate?version=1", params={"assistant": "sales-assistant"}),
    # browser sessions (issue 14)
    Route("POST", "/api/t/{tenant}/sessions/end", json={"subject": "alice"}),
]


@pytest.fixture(scope="module")
def client(idp, tmp_path_factory) -> Iterator[TestClient]:
    """One app for the inventory and the per-route tests (an app per test was most of this file's time): each of
    those compares the audit before and after its own requests, and every request is refused, so what one leaves
    changes nothing another checks. The tests that look at the whole audit or at the victim's data have an app of
    their own (own_client). The environment is the one conftest's fixtures give each test (_clean_env, login_as)."""
    from app import create_app
    from backend.container import set_services
    from backend.settings import Settings

    with pytest.MonkeyPatch.context() as mp:
        for name in _SCRUB:
            mp.delenv(name, raising=False)
        mp.setattr("backend.llm.router.utc_today", lambda: TEST_TODAY)
        mp.setenv("CHAINLIT_AUTH_SECRET", AUTH_SECRET)
        settings = Settings(ATRIUM_DATA_DIR=str(tmp_path_factory.mktemp("isolation")), OIDC_ISSUER=idp.issuer,
                            OIDC_API_AUDIENCE=AUDIENCE, OIDC_JWKS_MIN_REFRESH_S=0)
        with TestClient(create_app(settings, mount_chat=False)) as shared:
            yield shared
    set_services(None)


@pytest.fixture
def own_client(make_api_client, idp, login_as):
    return make_api_client(OIDC_ISSUER=idp.issuer, OIDC_API_AUDIENCE=AUDIENCE, OIDC_JWKS_MIN_REFRESH_S=0)


@pytest.fixture
def attackers(client, idp) -> dict[str, dict[str, str]]:
    return _attackers(client, idp)


@pytest.fixture
def own_attackers(own_client, idp) -> dict[str, dict[str, str]]:
    return _attackers(own_client, idp)


def _attackers(client, idp) -> dict[str, dict[str, str]]:
    """Tenant B's principals, each as strong as possible in its own tenant."""
    key = client.post(f"/api/t/{ATTACKER_TENANT}/keys", cookies=_admin_cookie(),
                      json={"name": "b", "scopes": ["chat", "retrieval", "ingest", "prompts:read", "prompts:write",
                                                    "admin"]})
    assert key.status_code == 201, key.text
    jwt = idp.token(sub="eve", groups=["engineering", "engineering-editors", "engineering-admins"])
    return {
        "session": {"cookies": _admin_cookie()},
        "api_key": {"headers": {"Authorization": f"Bearer {key.json()['token']}"}},
        "jwt": {"headers": {"Authorization": f"Bearer {jwt}"}},
    }


def _admin_cookie() -> dict[str, str]:
    """An engineering tenant admin's session (no demo user is one, so sign the claims like the app does)."""
    from tests.conftest import session_token

    claims = {"sub": "eng-admin", "groups": ["engineering", "engineering-admins"]}
    return {"access_token": session_token("eng-admin", claims)}


def _request(client, route: Route, url_tenant: str, creds: dict, header_tenant: str | None):
    headers = dict(creds.get("headers", {}))
    if header_tenant is not None:
        headers["X-Tenant-ID"] = header_tenant
    return client.request(route.method, route.url(url_tenant), headers=headers, cookies=creds.get("cookies"),
                          json=route.json, files=route.files, data=route.data)


def _code(r) -> str:
    """The error code, in Atrium's shape {"error": code} or OpenAI's {"error": {"code": ...}} (/v1 routes)."""
    error = r.json()["error"]
    return error["code"] if isinstance(error, dict) else error


def _denial_counts(client) -> dict[int, int]:
    with client.app.state.services.db.session() as session:
        return {e.id: e.count for e in list_events(session=session, kind="denied", limit=100_000)}


def _recorded_denial(client, before: dict[int, int]):
    """The denial a request recorded: a new row, or one more on its group's row (a repeat from the same source,
    tenant, reason and route within the audit window: governance/audit.py)."""
    with client.app.state.services.db.session() as session:
        events = list_events(session=session, kind="denied", limit=100_000)
    touched = [e for e in events if e.count > before.get(e.id, 0)]
    return touched[0] if len(touched) == 1 else None


def test_inventory_is_complete(client):
    declared = {
        (method.upper(), path)
        for path, ops in client.app.openapi()["paths"].items() if path.startswith("/api/t/{tenant}")
        for method in ops
    }
    listed = {(r.method, r.path.split("?")[0]) for r in ROUTES}
    missing = declared - listed
    assert not missing, f"add these tenant routes to ROUTES in {__file__}: {sorted(missing)}"
    assert not listed - declared, f"ROUTES lists routes the app does not have: {sorted(listed - declared)}"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_other_tenant_is_refused_and_audited(client, attackers, route):
    # (url tenant, X-Tenant-ID): the victim's URL bare, with a forged header, and the attacker's own URL
    # with the victim named in the header.
    attempts = [(VICTIM, None), (VICTIM, VICTIM), (VICTIM, ATTACKER_TENANT), (ATTACKER_TENANT, VICTIM)]
    for kind, creds in attackers.items():
        for url_tenant, header in attempts:
            if kind == "jwt" and header is None:
                expected = {"missing_tenant_header"}
            elif header is not None and header != url_tenant:
                expected = {"tenant_header_mismatch"}
            else:
                expected = {"tenant_mismatch"}
            before = _denial_counts(client)
            r = _request(client, route, url_tenant, creds, header)
            what = f"{kind}: {route.method} {route.url(url_tenant)} X-Tenant-ID={header}"
            assert r.status_code == 403, f"{what} -> {r.status_code} {r.text[:300]}"
            assert _code(r) in expected, f"{what} -> {r.text[:300]}"
            denial = _recorded_denial(client, before)
            assert denial is not None, what
            assert (denial.status, denial.reason, denial.route) == (403, _code(r), route.url(url_tenant)
                                                                    .split("?")[0]), what
            assert denial.tenant == url_tenant and denial.subject, what


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_anonymous_is_401_and_platform_admin_is_403(client, route):
    r = _request(client, route, VICTIM, {}, None)
    assert (r.status_code, _code(r)) == (401, "not_authenticated")
    # platform admins act on tenants only through the explicit /api/admin routes
    r = _request(client, route, VICTIM, {"cookies": session_cookie_for("root")}, None)
    assert (r.status_code, _code(r)) == (403, "tenant_mismatch")


def test_victim_data_unchanged_by_the_attempts(own_client, own_attackers, login_as):
    client, attackers = own_client, own_attackers
    cases = client.get(f"/api/t/{VICTIM}/evals/sales-assistant/cases/export", cookies=login_as("bob")).text
    assert "rep-discount-limit" in cases  # the demo set: the attempts above target a case that exists
    for route in ROUTES:
        for creds in attackers.values():
            _request(client, route, VICTIM, creds, VICTIM)
    keys = client.get(f"/api/t/{VICTIM}/keys", cookies=login_as("carol")).json()
    assert keys == []
    with client.app.state.services.db.session() as session:
        assert list(session.exec(select(ChatTurn))) == []
        assert list(session.exec(select(EvalRun))) == []
    assert client.get(f"/api/t/{VICTIM}/evals/sales-assistant/cases/export", cookies=login_as("bob")).text == cases


def test_the_victims_audit_names_the_attempts_but_nothing_about_other_tenants(own_client, own_attackers,
                                                                                 login_as):
    """carol (sales admin) sees every attempt on sales, but not the attackers' other memberships, another
    tenant's API key ids, or the platform-wide `suspicious_access` counters (operators see those)."""
    client, attackers = own_client, own_attackers
    for route in ROUTES[:8]:
        for creds in attackers.values():
            _request(client, route, VICTIM, creds, None)
    with client.app.state.services.db.session() as session:
        raw = list_events(session=session, tenant=VICTIM, limit=1000)
    assert any("member_of" in e.detail for e in raw) and any((e.subject or "").startswith("key:") for e in raw)
    assert any(e.kind == "suspicious_access" for e in raw)  # else the filtering below proves nothing

    seen = client.get(f"/api/t/{VICTIM}/audit?limit=1000", cookies=login_as("carol")).json()
    denials = [e for e in seen if e["kind"] == "denied"]
    assert len(denials) == sum(1 for e in raw if e.kind == "denied")
    assert {e["subject"] for e in denials} == {"eng-admin", "eve", "another tenant's API key"}
    assert all("member_of" not in e["detail"] for e in seen)
    assert all(e["kind"] != "suspicious_access" for e in seen)
    assert client.get(f"/api/t/{VICTIM}/audit?kind=suspicious_access", cookies=login_as("carol")).json() == []
