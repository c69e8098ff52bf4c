"""Tokens from the real OpenID provider: API access tokens (JWT, aud atrium-api) accepted as bearer tokens,
key rotation at the provider picked up, and the login checks (nonce, PKCE, one-time codes) enforced."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from backend.auth.oidc import OidcLogin, OidcLoginError
from tests.conftest import free_port
from tests.oidc_provider import OidcProviderUnavailable, generate_keys_file, start_oidc_provider

REDIRECT = "http://127.0.0.1:9/cb"  # never followed: the tests read the code off the Location header
APP_REDIRECT = "http://testserver/chat/auth/oauth/oidc/callback"


def _provider(**kw):
    try:
        return start_oidc_provider([REDIRECT, APP_REDIRECT], **kw)
    except OidcProviderUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def op():
    provider = _provider()
    yield provider
    provider.stop()


def api_token(op, user: str) -> dict:
    """Authorization code flow for the API resource; returns the token response (access_token is a JWT)."""
    discovery = httpx.get(op.discovery_url).json()
    query = urlencode({"client_id": op.client_id, "response_type": "code", "redirect_uri": REDIRECT,
                       "scope": "openid groups api", "resource": op.api_resource, "state": "s" * 16})
    location = op.login(f"{discovery['authorization_endpoint']}?{query}", user, follow_to_redirect_uri=False)
    code = parse_qs(urlsplit(location).query)["code"][0]
    r = httpx.post(discovery["token_endpoint"], auth=(op.client_id, op.client_secret),
                   data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    r.raise_for_status()
    return r.json()


def test_access_token_from_the_idp_is_a_verified_bearer(make_api_client, op):
    client = make_api_client(OIDC_ISSUER=op.issuer, OIDC_API_AUDIENCE=op.api_audience,
                             OIDC_CLIENT_ID=op.client_id, OIDC_CLIENT_SECRET=op.client_secret)
    tokens = api_token(op, "carol")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = client.get("/api/me", headers=bearer).json()
    assert (me["auth"], me["subject"]) == ("jwt", "carol")
    assert me["tenants"] == {"sales": ["member", "tenant_admin"]}
    assert client.get("/api/t/sales/keys", headers={**bearer, "X-Tenant-ID": "sales"}).status_code == 200
    r = client.get("/api/t/sales/keys", headers=bearer)
    assert (r.status_code, r.json()["error"]) == (403, "missing_tenant_header")
    # The ID token is for the browser client, not for the API.
    r = client.get("/api/me", headers={"Authorization": f"Bearer {tokens['id_token']}"})
    assert (r.status_code, r.json()["error"]) == (401, "wrong_audience")


def test_keycloak_style_nested_claims_map_through_tenants_yaml(make_api_client, op, tmp_path):
    """`kc` carries realm_access.roles instead of groups: a tenants.yaml rule with a dotted path maps it."""
    from backend.settings import REPO_ROOT

    config = Path(shutil.copytree(REPO_ROOT / "config", tmp_path / "config"))
    text = (config / "tenants.yaml").read_text()
    rule = "match: {claim: groups, any_of: [engineering]}"
    assert rule in text
    nested = "match: {claim: realm_access.roles, any_of: [engineering]}"
    (config / "tenants.yaml").write_text(text.replace(rule, nested))
    client = make_api_client(OIDC_ISSUER=op.issuer, OIDC_API_AUDIENCE=op.api_audience,
                             ATRIUM_CONFIG_DIR=str(config))
    token = api_token(op, "kc")["access_token"]
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["tenants"] == {"engineering": ["member"]}


def test_key_rotation_at_the_provider(make_api_client, tmp_path):
    port = free_port()
    first = _provider(port=port, keys_file=generate_keys_file(tmp_path / "a.json"))
    try:
        client = make_api_client(OIDC_ISSUER=first.issuer, OIDC_API_AUDIENCE=first.api_audience,
                                 OIDC_JWKS_MIN_REFRESH_S=0)
        old = api_token(first, "alice")["access_token"]
        assert client.get("/api/me", headers={"Authorization": f"Bearer {old}"}).status_code == 200
    finally:
        first.stop()
    second = _provider(port=port, keys_file=generate_keys_file(tmp_path / "b.json"))
    try:
        new = api_token(second, "alice")["access_token"]
        assert client.get("/api/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200
        r = client.get("/api/me", headers={"Authorization": f"Bearer {old}"})
        assert (r.status_code, r.json()["error"]) == (401, "unknown_kid")
    finally:
        second.stop()


def _login_code(op, login: OidcLogin, user: str = "alice"):
    url, flow = login.start("http://testserver")
    location = op.login(url, user, follow_to_redirect_uri=False)
    q = parse_qs(urlsplit(location).query)
    assert q["state"] == [flow.state]
    return q["code"][0], flow


@pytest.fixture
def login(op):
    return OidcLogin(issuer=op.issuer, client_id=op.client_id, client_secret=op.client_secret,
                     scopes="openid profile groups", secret="s" * 40)


def test_login_flow_verifies_the_id_token_and_merges_userinfo(op, login):
    code, flow = _login_code(op, login, "fiona")
    access = asyncio.run(login.exchange(code, flow))
    assert flow.id_claims["sub"] == "fiona" and flow.id_claims["aud"] == op.client_id
    claims = asyncio.run(login.user_claims(access, flow.id_claims))
    assert claims["sub"] == "fiona" and "finance-admins" in claims["groups"]
    assert "nonce" not in claims and "at_hash" not in claims


def test_wrong_nonce_is_refused(op, login):
    code, flow = _login_code(op, login)
    with pytest.raises(OidcLoginError) as err:
        asyncio.run(login.exchange(code, replace(flow, nonce="another-login")))
    assert err.value.reason == "id_token_bad_nonce"


def test_wrong_pkce_verifier_and_replayed_code_are_refused(op, login):
    code, flow = _login_code(op, login)
    with pytest.raises(OidcLoginError) as err:
        asyncio.run(login.exchange(code, replace(flow, code_verifier="x" * 64)))
    assert err.value.reason == "code_exchange_failed"
    code, flow = _login_code(op, login)
    asyncio.run(login.exchange(code, flow))
    with pytest.raises(OidcLoginError) as err:
        asyncio.run(login.exchange(code, flow))  # authorization codes are single-use
    assert err.value.reason == "code_exchange_failed"


def test_flow_cookie_is_encrypted_and_tamper_evident(login):
    _, flow = login.start("http://testserver")
    sealed = flow.seal(login.fernet)
    assert flow.nonce not in sealed and flow.code_verifier not in sealed
    assert type(flow).unseal(sealed, login.fernet) == flow
    with pytest.raises(OidcLoginError) as err:
        type(flow).unseal(sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB"), login.fernet)
    assert err.value.reason == "login_flow_invalid"
    other = OidcLogin(issuer=login.issuer, client_id="atrium", client_secret="x", scopes="openid", secret="t" * 40)
    with pytest.raises(OidcLoginError):
        type(flow).unseal(sealed, other.fernet)
