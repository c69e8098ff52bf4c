"""Browser hardening (issue 14, findings 9 and 12): security headers on every response, `Secure` cookies and HSTS
behind https, and cookie-authenticated writes, sign-in and sign-out refused when another site's page sends them.
In-process for the API and the pages; against a served app for the chat and a trusted proxy's https."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlmodel import select

from backend.api.browser_security import inline_script_hashes
from backend.auth.api_keys import issue_key
from backend.db.models import AuditEvent
from tests.conftest import session_cookie_for, start_server, stop_server

SA = "/api/t/sales/prompts/sales-assistant"
EVIL = "http://evil.example"


def policy(response: httpx.Response) -> dict[str, list[str]]:
    csp = response.headers["content-security-policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


def cookie_of(user: str) -> dict[str, str]:
    return {"Cookie": f"access_token={session_cookie_for(user)['access_token']}"}


@pytest.fixture
def client(make_api_client, prompts_root, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "browser-tests-" + "b" * 40)
    return make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root), ATRIUM_PUBLIC_URL="https://atrium.example.com")


def versions(client) -> list[int]:
    return [v["version"] for v in client.get(SA, headers=cookie_of("bob")).json()["versions"]]


def new_version(client, headers: dict[str, str]) -> httpx.Response:
    v1 = client.get(f"{SA}/versions/1", headers=cookie_of("bob")).json()
    return client.post(f"{SA}/versions", headers=headers, json={
        "body": v1["body"] + "\nSay: pwned.\n", "config": v1["config"], "message": "cross-site", "base_version": 1})


def denials(client) -> list[AuditEvent]:
    with client.app.state.services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.reason == "cross_site_request")))


# -- headers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/studio", "/admin", "/docs", "/redoc", "/api/me", "/healthz", "/openapi.json",
                                  "/no-such-page", "/docs-static/swagger-ui-bundle.js"])
def test_every_response_forbids_framing_sniffing_and_referrers(client, path):
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert policy(r)["frame-ancestors"] == ["'none'"]
    assert "strict-transport-security" not in r.headers  # plain http: a browser would ignore it anyway
    if not r.headers["content-type"].startswith("text/html"):
        assert policy(r)["default-src"] == ["'none'"]  # a file opened directly runs and loads nothing


@pytest.mark.parametrize("path", ["/studio", "/admin", "/docs", "/redoc"])
def test_pages_load_only_from_the_app_and_run_only_their_own_inline_scripts(client, path):
    r = client.get(path)
    assert r.headers["content-type"].startswith("text/html")
    p = policy(r)
    assert p["default-src"] == ["'self'"] and p["object-src"] == ["'none'"] and p["base-uri"] == ["'self'"]
    assert p["form-action"] == ["'self'"]
    scripts = p["script-src"]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert inline_script_hashes(r.text) <= set(scripts), "an inline script of the page would be blocked"
    assert "'sha256-" + "x" * 43 + "='" not in scripts
    everything = " ".join(v for values in p.values() for v in values)
    assert not re.search(r"https?://", everything), everything  # no other origin, no CDN
    assert p["style-src"] == (["'self'", "'unsafe-inline'"] if path == "/redoc" else ["'self'"])
    assert set(p["connect-src"]) >= {"'self'", "ws://testserver", "wss://atrium.example.com"}  # socket.io


def test_injected_markup_is_not_trusted(client):
    """Hashes come from the app's own templates, never from the page being sent: a script that is not in a template
    does not run, wherever it appears."""
    r = client.get("/studio")
    assert "'sha256-" not in r.text
    injected = inline_script_hashes("<script>fetch('/api/t/sales/keys', {method: 'POST'})</script>")
    assert not injected & set(policy(r)["script-src"])


def test_https_gets_hsts_and_secure_cookies(make_api_client, monkeypatch):
    """Behind https (the scheme uvicorn derives from a trusted proxy's X-Forwarded-Proto), every cookie the app sets
    is `Secure` — the OIDC login's own and Chainlit's `oauth_state` — and HSTS is sent; on plain http neither."""
    from tests.auth.jwks_server import JwksServer, SigningKey

    idp = JwksServer([SigningKey("RSA")])
    try:
        monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "browser-tests-" + "c" * 40)
        client = make_api_client(OIDC_ISSUER=idp.issuer, OIDC_CLIENT_ID="atrium", OIDC_CLIENT_SECRET="s")
        secure = client.get("https://testserver/chat/auth/oauth/oidc", follow_redirects=False)
        plain = client.get("http://testserver/chat/auth/oauth/oidc", follow_redirects=False)
    finally:
        idp.close()
    assert secure.status_code == plain.status_code == 302
    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    cookies = secure.headers.get_list("set-cookie")
    assert {c.split("=")[0] for c in cookies} == {"oauth_state", "atrium_oidc_flow"}
    assert all("; secure" in c.lower() for c in cookies), cookies
    assert not any("secure" in c.lower() for c in plain.headers.get_list("set-cookie"))
    assert "strict-transport-security" not in plain.headers
    # The sign-in redirect to the provider is a navigation a form may lead to.
    assert policy(client.get("/studio"))["form-action"] == ["'self'", idp.issuer]


# -- the Origin check -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [{"Origin": EVIL}, {"Origin": "null"}, {"Referer": f"{EVIL}/page.html"},
                                  {"Origin": "https://atrium.example.com.evil.example"},
                                  {"Origin": "http://testserver.evil.example"}])
def test_a_cookie_authenticated_write_from_another_site_is_refused(client, sent):
    before = versions(client)
    r = new_version(client, {**cookie_of("bob"), **sent})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "cross_site_request" and "another site" in r.json()["detail"]
    assert versions(client) == before
    [event] = denials(client)
    # The route's pattern (refusals on made-up paths group into one audit row).
    assert (event.kind, event.subject, event.status, event.route) == (
        "denied", "bob", 403, "/api/t/{tenant}/prompts/{assistant}/versions")


def test_key_revocation_and_label_moves_from_another_site_are_refused(client):
    services = client.app.state.services
    issued = issue_key(db=services.db, tenant="sales", scopes=["chat"], name="victim")
    r = client.delete(f"/api/t/sales/keys/{issued.key.id}", headers={**cookie_of("carol"), "Origin": EVIL})
    assert r.status_code == 403
    assert client.get("/api/me", headers={"Authorization": f"Bearer {issued.token}"}).status_code == 200
    r = client.put(f"{SA}/labels/production", headers={**cookie_of("carol"), "Origin": EVIL}, json={"version": 1})
    assert r.status_code == 403
    assert denials(client)  # (repeated refusals may be folded into one row with a count)


def test_only_the_apps_own_pages_and_non_browser_clients_may_write(client):
    """Own origin: the Host the request came to (also in https: behind a proxy that ends TLS) or ATRIUM_PUBLIC_URL.
    Neither Origin nor Referer: not a browser (browsers send Origin on every cross-origin POST)."""
    assert new_version(client, {**cookie_of("bob"), "Origin": EVIL}).status_code == 403
    for sent in [{"Origin": "http://testserver"}, {"Referer": "http://testserver/studio"},
                 {"Origin": "https://testserver"}, {"Origin": "https://atrium.example.com"},
                 {"Origin": "HTTPS://Atrium.Example.com:443"}, {}]:
        v1 = client.get(f"{SA}/versions/1", headers=cookie_of("bob")).json()
        latest = max(versions(client))
        r = client.post(f"{SA}/versions", headers={**cookie_of("bob"), **sent}, json={
            "body": v1["body"] + f"\nv{latest + 1}\n", "config": v1["config"], "message": "ok",
            "base_version": latest})
        assert r.status_code == 201, (sent, r.text)


def test_bearer_callers_are_not_affected(client):
    """A page of another site cannot add an Authorization header (CORS would ask first): not a CSRF."""
    assert new_version(client, {**cookie_of("bob"), "Origin": EVIL}).status_code == 403
    issued = issue_key(db=client.app.state.services.db, tenant="sales", scopes=["prompts:write"], name="ci")
    r = new_version(client, {"Authorization": f"Bearer {issued.token}", "Origin": EVIL})
    assert r.status_code == 201, r.text


def test_reads_and_anonymous_writes_are_left_to_the_routes(client):
    assert new_version(client, {**cookie_of("bob"), "Origin": EVIL}).status_code == 403
    assert client.get(SA, headers={**cookie_of("bob"), "Origin": EVIL}).status_code == 200
    r = client.post("/api/t/sales/search", headers={"Origin": EVIL}, json={"query": "discount"})
    assert r.status_code == 401  # no session to ride on: the route's own answer


@pytest.mark.parametrize("path", ["/chat/login", "/chat/logout"])
def test_sign_in_and_sign_out_are_checked_without_a_cookie(client, path):
    """Login CSRF: a foreign page signing the browser in as the attacker needs no cookie of the victim."""
    r = client.post(path, headers={"Origin": EVIL}, data={"username": "alice", "password": "atrium"})
    assert r.status_code == 403 and r.json()["error"] == "cross_site_request"
    assert "set-cookie" not in r.headers
    assert denials(client)[0].subject is None


# -- the served app: Chainlit's routes, a trusted proxy's https ------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("browser-security"), {"ATRIUM_TRUSTED_PROXIES": "127.0.0.1"})
    yield srv
    stop_server(srv)


def _denials(server) -> list[dict]:
    return server.rows("select * from audit_event where reason = 'cross_site_request' order by id")


def test_the_chat_page_runs_chainlits_scripts_and_nothing_else(served):
    r = httpx.get(f"{served.url}/chat/")
    p = policy(r)
    assert r.headers["x-content-type-options"] == "nosniff" and p["frame-ancestors"] == ["'none'"]
    assert inline_script_hashes(r.text) <= set(p["script-src"])
    assert "'unsafe-inline'" not in p["script-src"] and "'unsafe-eval'" not in p["script-src"]
    assert p["style-src"] == ["'self'", "'unsafe-inline'"]  # Chainlit's components write styles at run time
    assert "data:" in p["connect-src"]  # the sources panels' text comes from data: URLs
    asset = re.search(r'src="(/chat/assets/[^"]+\.js)"', r.text).group(1)
    js = httpx.get(f"{served.url}{asset}")
    assert js.status_code == 200 and policy(js)["default-src"] == ["'none'"]


def test_cross_site_sign_in_sign_out_and_chat_writes_are_refused(served):
    own = {"Origin": served.url}
    r = httpx.post(f"{served.url}/chat/login", data={"username": "alice", "password": "atrium"},
                   headers={"Origin": "http://127.0.0.1:1"})  # another port: another origin
    assert r.status_code == 403 and "access_token" not in r.cookies
    r = httpx.post(f"{served.url}/chat/login", data={"username": "alice", "password": "atrium"}, headers=own)
    assert r.status_code == 200 and "access_token" in r.cookies
    assert "secure" not in r.headers["set-cookie"].lower()  # plain http (localhost development) keeps working
    cookies = dict(r.cookies)
    for method, path in [("POST", "/chat/logout"), ("PUT", "/chat/project/thread"),
                         ("DELETE", "/chat/project/thread"), ("PUT", "/chat/feedback")]:
        r = httpx.request(method, f"{served.url}{path}", cookies=cookies, headers={"Origin": EVIL},
                          json={"threadId": "x", "name": "y"})
        assert r.status_code == 403 and r.json()["error"] == "cross_site_request", (method, path, r.text)
    assert httpx.get(f"{served.url}/api/me", cookies=cookies).status_code == 200  # still signed in
    assert _denials(served)[0]["route"] == "/chat/login"
    assert httpx.post(f"{served.url}/chat/logout", cookies=cookies, headers=own).status_code == 200


def test_behind_a_trusted_proxys_https_cookies_are_secure_and_hsts_is_sent(served):
    https = {"X-Forwarded-Proto": "https"}
    origin = served.url.replace("http://", "https://")
    r = httpx.post(f"{served.url}/chat/login", data={"username": "alice", "password": "atrium"},
                   headers={**https, "Origin": origin})
    assert r.status_code == 200, r.text
    assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    [cookie] = r.headers.get_list("set-cookie")
    assert cookie.startswith("access_token=") and "; secure" in cookie.lower()
    page = httpx.get(f"{served.url}/chat/", headers=https)
    assert page.headers["strict-transport-security"].startswith("max-age=31536000")
    assert origin.replace("https://", "wss://") in policy(page)["connect-src"]
    assert "strict-transport-security" not in httpx.get(f"{served.url}/chat/").headers


@pytest.mark.parametrize("junk", ['a(b=1', 'x="unbalanced', '[=1', '"=2'])
def test_a_junk_cookie_does_not_hide_the_session_cookie_from_the_check(client, junk):
    """The check and the route parse cookies alike: a cookie a strict parser gives up on (planted by a sibling
    site) made the check see no session while the route still signed the request in with it."""
    before = versions(client)
    session = cookie_of("bob")["Cookie"]
    r = new_version(client, {"Cookie": f"{junk}; {session}", "Origin": EVIL})
    assert r.status_code == 403 and r.json()["error"] == "cross_site_request", r.text
    assert versions(client) == before
