"""Browser login through a real OpenID provider (npm oidc-provider), end to end against the served app:
/chat/auth/oauth/oidc -> provider login form -> callback -> Chainlit session -> /api/me and socket.io chat."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest

from tests.chainlit_client import ChainlitSession
from tests.conftest import free_port, start_server, stop_server
from tests.oidc_provider import OidcProviderUnavailable, start_oidc_provider

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def idp_app(tmp_path_factory):
    """One provider and one served app configured for it (the redirect URI is registered up front)."""
    port = free_port()
    callback = f"http://127.0.0.1:{port}/chat/auth/oauth/oidc/callback"
    os.environ["OIDC_REQUIRE_PKCE"] = "1"  # the provider refuses code exchanges without a valid verifier
    os.environ["OIDC_POST_LOGOUT_REDIRECT_URIS"] = f"http://127.0.0.1:{port}/chat/login"
    try:
        op = start_oidc_provider([callback])
    except OidcProviderUnavailable as exc:
        pytest.skip(str(exc))
    finally:
        os.environ.pop("OIDC_REQUIRE_PKCE", None)
        os.environ.pop("OIDC_POST_LOGOUT_REDIRECT_URIS", None)
    server = start_server(tmp_path_factory.mktemp("oidc-app"), {
        "OIDC_ISSUER": op.issuer, "OIDC_CLIENT_ID": op.client_id, "OIDC_CLIENT_SECRET": op.client_secret,
        "OIDC_API_AUDIENCE": op.api_audience, "OIDC_SCOPES": "openid profile email groups",
    }, port=port)
    yield op, server
    stop_server(server)
    op.stop()


def _audit(server, kind: str) -> list[dict]:
    return server.rows("select * from audit_event where kind = :k order by id", k=kind)


def _turns(server, subject: str) -> list[dict]:
    return server.rows("select * from chat_turn where subject = :s order by id", s=subject)


def _login(op, server, user: str) -> httpx.Client:
    http = httpx.Client(timeout=30)
    final = op.login(f"{server.url}/chat/auth/oauth/oidc", user, http=http)
    assert final.status_code == 200 and final.url.path == "/chat/login/callback", final
    assert "access_token" in http.cookies or any(c.name.startswith("access_token") for c in http.cookies.jar)
    return http


def _session_cookies(http: httpx.Client, server) -> dict[str, str]:
    host = urlsplit(server.url).hostname
    return {c.name: c.value for c in http.cookies.jar if c.name.startswith("access_token") and host in c.domain}


def test_login_page_offers_the_provider_and_no_password_form(idp_app):
    op, server = idp_app
    config = httpx.get(f"{server.url}/chat/auth/config").json()
    assert config["oauthProviders"] == ["oidc"]
    assert config["passwordAuth"] is False
    # The demo password login is off with an IdP (ATRIUM_DEV_LOGIN unset).
    r = httpx.post(f"{server.url}/chat/login", data={"username": "alice", "password": "atrium"})
    assert r.status_code >= 400 and "access_token" not in r.cookies


def test_authorization_request_uses_pkce_state_and_nonce(idp_app):
    op, server = idp_app
    r = httpx.get(f"{server.url}/chat/auth/oauth/oidc", follow_redirects=False)
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == op.issuer
    q = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert q["client_id"] == "atrium" and q["response_type"] == "code"
    assert q["redirect_uri"] == f"{server.url}/chat/auth/oauth/oidc/callback"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) >= 43
    assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32
    assert "openid" in q["scope"].split()
    # Chainlit's own state cookie carries the same state; the verifier stays in our encrypted cookie.
    assert r.cookies["oauth_state"] == q["state"]
    set_cookies = r.headers.get_list("set-cookie")
    assert all("Max-Age=600" in c and "HttpOnly" in c for c in set_cookies), set_cookies  # time for MFA
    assert r.cookies["atrium_oidc_flow"] and q["nonce"] not in r.cookies["atrium_oidc_flow"]


def test_editor_logs_in_and_gets_tenant_and_roles(idp_app):
    op, server = idp_app
    http = _login(op, server, "bob")
    me = http.get(f"{server.url}/api/me").json()
    assert me["subject"] == "bob" and me["auth"] == "session"
    assert me["tenants"] == {"sales": ["member", "prompt_editor"]}
    logins = [e for e in _audit(server, "login") if e["subject"] == "bob"]
    assert logins and '"oidc"' in str(logins[-1]["detail"]) and logins[-1]["ip"] == "127.0.0.1"


def test_user_in_two_tenants_sees_both_labelled(idp_app):
    op, server = idp_app
    http = _login(op, server, "multi")
    me = http.get(f"{server.url}/api/me").json()
    assert me["tenants"] == {"finance": ["member"], "sales": ["member"]}
    profiles = http.get(f"{server.url}/chat/project/settings", params={"language": "en-US"}).json()["chatProfiles"]
    names = {p["name"] for p in profiles}
    assert {"sales/sales-assistant", "sales/deal-desk", "finance/finance-assistant"} <= names
    assert all(p["display_name"].startswith(("Sales · ", "Finance · ")) for p in profiles)


def test_platform_admin_reads_the_audit_log_through_the_admin_route(idp_app):
    op, server = idp_app
    http = _login(op, server, "root")
    events = http.get(f"{server.url}/api/admin/audit", params={"kind": "login"}).json()
    assert any(e["subject"] == "root" for e in events)
    assert any(e["route"] == "/api/admin/audit" for e in _audit(server, "admin_access"))
    # ...but no tenant data through tenant routes: root is in no tenant.
    r = http.post(f"{server.url}/api/t/sales/chat", json={"assistant": "sales-assistant", "message": "hi"})
    assert r.status_code == 403 and r.json()["error"] == "tenant_mismatch"


async def test_member_chats_over_socketio_after_oidc_login(idp_app):
    op, server = idp_app
    cookies = _session_cookies(_login(op, server, "dave"), server)
    async with ChainlitSession(server.url, cookies, chat_profile="engineering/eng-assistant") as chat:
        reply = await chat.ask("Hello! In one sentence, what can you help me with?")
    assert reply.text.strip() and "No access" not in reply.text


async def test_user_without_tenant_gets_no_access_with_the_group_to_ask_for(idp_app):
    op, server = idp_app
    http = _login(op, server, "nobody")
    assert http.get(f"{server.url}/api/me").json()["tenants"] == {}
    async with ChainlitSession(server.url, _session_cookies(http, server)) as chat:
        greeting = " ".join(str(d.get("output", "")) for n, d in chat.events if n == "new_message")
        reply = await chat.ask("hello?")
    # The chat's start says it at length, with the group to ask for; a message after it gets a short reminder.
    assert "No access" in greeting and "sales (Sales)" in greeting
    assert "note at the top says whom to ask" in reply.text and reply.tokens == []


def test_signing_in_from_the_studio_or_the_operator_page_lands_back_there(idp_app):
    op, server = idp_app
    # The sign-in pages offer the IdP with the way back (and no password form: the demo login is off).
    page = httpx.get(f"{server.url}/studio", params={"tenant": "sales"})
    assert page.status_code == 401 and 'id="login-form"' not in page.text
    assert 'href="/chat/auth/oauth/oidc?next=%2Fstudio%3Ftenant%3Dsales"' in page.text
    assert 'href="/chat/auth/oauth/oidc?next=%2Fadmin"' in httpx.get(f"{server.url}/admin").text

    http = httpx.Client(timeout=30)
    final = op.login(f"{server.url}/chat/auth/oauth/oidc?next=/studio?tenant=sales", "bob", http=http)
    assert final.status_code == 200 and final.url.path == "/studio", final.url
    assert final.url.params["tenant"] == "sales" and 'id="assistant-list"' in final.text
    assert 'title="bob"' in final.text  # the studio itself, for the user who just signed in
    assert http.get(f"{server.url}/api/me").json()["subject"] == "bob"  # the same session the chat uses

    root = httpx.Client(timeout=30)
    final = op.login(f"{server.url}/chat/auth/oauth/oidc?next=/admin", "root", http=root)
    assert final.status_code == 200 and final.url.path == "/admin", final.url
    assert 'id="denials"' in final.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/studio", "/chat/../studio",
                                    "/studio/../api/admin/audit", "/admin\\evil", "/api/me"])
def test_a_way_back_elsewhere_is_ignored_and_the_login_lands_in_the_chat(idp_app, target):
    op, server = idp_app
    http = httpx.Client(timeout=30)
    final = op.login(f"{server.url}/chat/auth/oauth/oidc?{urlencode({'next': target})}", "bob", http=http)
    assert final.status_code == 200 and final.url.path == "/chat/login/callback", final.url
    assert http.get(f"{server.url}/api/me").json()["subject"] == "bob"


def test_a_failed_login_from_the_studio_still_reports_the_failure(idp_app):
    op, server = idp_app
    http = httpx.Client(timeout=30)
    location = op.login(f"{server.url}/chat/auth/oauth/oidc?next=/studio", "bob", http=http,
                        follow_to_redirect_uri=False)
    forged = location.replace("state=", "state=x")  # a callback whose state is not this login's
    r = http.get(forged, follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].startswith("/chat/login?error=")


def test_wrong_password_at_the_provider_logs_nobody_in(idp_app):
    op, server = idp_app
    http = httpx.Client(timeout=30)
    r = op.login(f"{server.url}/chat/auth/oauth/oidc", "bob", "wrong", http=http)
    assert r.status_code == 401 and "access_token" not in http.cookies


def test_forged_or_replayed_callbacks_are_refused_and_audited(idp_app):
    op, server = idp_app
    http = httpx.Client(timeout=30)
    location = op.login(f"{server.url}/chat/auth/oauth/oidc", "alice", http=http, follow_to_redirect_uri=False)
    q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    callback = f"{server.url}/chat/auth/oauth/oidc/callback"

    # state altered in the URL (and in Chainlit's cookie, so only our flow cookie catches it)
    http.cookies.set("oauth_state", "x" * 43)
    r = http.get(callback, params={**q, "state": "x" * 43})
    assert r.status_code == 302 and "error=oauthSignin" in r.headers["location"]
    # no flow cookie at all: a callback link replayed in another browser
    r = httpx.get(callback, params=q, cookies={"oauth_state": q["state"]})
    assert r.status_code == 302 and "error=oauthSignin" in r.headers["location"]
    assert "access_token" not in r.cookies
    # the provider reports an error (e.g. the user cancelled) for a login this browser started
    browser = httpx.Client(timeout=30)
    start = browser.get(f"{server.url}/chat/auth/oauth/oidc", follow_redirects=False)
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    r = browser.get(callback, params={"error": "access_denied", "state": state})
    assert r.status_code == 302 and "error=oauthSignin" in r.headers["location"]
    # a refused callback also ends the login it belonged to: the flow cookie is gone, no session either
    r = http.get(callback, params=q)
    assert r.status_code == 302 and "error=oauthSignin" in r.headers["location"]
    assert not any(c.name.startswith("access_token") for c in http.cookies.jar)

    reasons = {e["reason"] for e in _audit(server, "denied") if e["route"] == "/chat/auth/oauth/oidc/callback"}
    assert {"state_mismatch", "login_flow_missing", "idp_error_access_denied"} <= reasons


CHROMIUM = Path("/usr/bin/chromium")


def _provider_session_alive(http: httpx.Client, server, op) -> bool:
    """Start a login and follow the provider's redirects: straight back with a code means its session is alive;
    its password form means it asks again."""
    r = http.get(f"{server.url}/chat/auth/oauth/oidc", follow_redirects=False)
    for _ in range(10):
        if not r.is_redirect:
            break
        target = r.headers["location"]
        if target.startswith(f"{server.url}/chat/auth/oauth/oidc/callback"):
            return True
        r = http.get(target if target.startswith("http") else f"{op.issuer}{target}", follow_redirects=False)
    assert r.status_code == 200 and 'name="password"' in r.text, (r.status_code, r.text[:300])
    return False


def test_signing_out_ends_the_session_at_the_provider_too(idp_app):
    """RP-initiated logout: after Atrium's sign-out, the next page goes to the provider's end_session_endpoint
    and comes back to the login page; the provider then asks for the password again."""
    op, server = idp_app
    http = _login(op, server, "erin")
    assert _provider_session_alive(http, server, op)  # without the sign-out, the provider signs erin straight in
    http.get(f"{server.url}/chat/auth/oauth/oidc", follow_redirects=True)  # finish that login
    copied = _session_cookies(http, server)
    r = http.post(f"{server.url}/chat/logout", json={})  # what Chainlit's "Logout" sends, then it reloads
    assert r.status_code == 200 and "atrium_idp_logout" in r.headers.get("set-cookie", "")
    assert httpx.get(f"{server.url}/api/me", cookies=copied).status_code == 401, "Atrium's session is revoked too"
    r = http.get(f"{server.url}/chat/user")  # the chat's own fetches are not redirected
    assert r.status_code == 401
    r = http.get(f"{server.url}/chat/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 302
    end = urlsplit(r.headers["location"])
    assert f"{end.scheme}://{end.netloc}" == op.issuer and parse_qs(end.query) == {
        "client_id": [op.client_id], "post_logout_redirect_uri": [f"{server.url}/chat/login"]}
    page = http.get(r.headers["location"], follow_redirects=True)  # the provider asks "sign out?"
    form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    assert form is not None, page.text[:500]
    done = http.post(urljoin(str(page.url), form.group(1)), data={**fields, "logout": "yes"}, follow_redirects=True)
    assert done.url == httpx.URL(f"{server.url}/chat/login")  # back on Atrium's login page
    assert not _provider_session_alive(http, server, op)
    assert http.get(f"{server.url}/chat/", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 200


def test_real_browser_signs_in_through_the_provider_and_chats(idp_app):
    """Real Chromium: the chat's login page -> the provider's form -> back in the chat, as dave."""
    op, server = idp_app
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("real-browser test skipped: /usr/bin/chromium is missing (bash scripts/test-deps.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/chat")
            page.get_by_role("button", name="Sign in with your company account").click()
            page.wait_for_url(f"{op.issuer}/**")
            page.fill("input[name=login]", "dave")
            page.fill("input[name=password]", "pw")
            with page.expect_websocket(timeout=60_000) as socket:
                page.click("button[type=submit]")
                page.wait_for_url(f"{server.url}/chat/**")
            # Type only once the chat's socket is up (the composer is enabled slightly earlier).
            socket.value.wait_for_event("framereceived", timeout=60_000)
            page.locator("#chat-input:not([disabled])").wait_for(timeout=60_000)
            me = page.request.get(f"{server.url}/api/me").json()
            assert me["subject"] == "dave" and me["tenants"] == {"engineering": ["member", "prompt_editor"]}
            before = _turns(server, "dave")
            page.locator("#chat-input").click()
            page.keyboard.type("Hello, who are you?")  # typed like a person: React sees every key
            page.keyboard.press("Enter")
            page.get_by_text("Hello, who are you?").first.wait_for()
            deadline = time.monotonic() + 60
            while len(_turns(server, "dave")) == len(before) and time.monotonic() < deadline:
                time.sleep(0.5)
            turns = _turns(server, "dave")
            assert len(turns) > len(before), server.log_tail(400)
            turn = turns[-1]
            assert (turn["tenant"], turn["channel"], turn["outcome"]) == ("engineering", "ui", "ok")
            # Signing out in the chat's menu ends the provider's session too: its "sign out?" page, then back.
            page.click("#user-nav-button")
            page.get_by_role("menuitem", name="Sign out").click()
            page.wait_for_url(f"{op.issuer}/**", timeout=30_000)
            page.locator("button[autofocus], button[type=submit], input[type=submit]").first.click()
            page.wait_for_url(f"{server.url}/chat/login**", timeout=30_000)
            page.get_by_role("button", name="Sign in with your company account").click()
            page.wait_for_url(f"{op.issuer}/**")
            page.locator("input[name=password]").wait_for(timeout=30_000)  # asked again: no silent re-login
        finally:
            browser.close()
