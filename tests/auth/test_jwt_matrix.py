"""Bearer JWT attack matrix: keys the test generates, served as a JWKS over real HTTP; each forgery is
refused with the right status and reason, and leaves an audit event."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from backend.db.repositories.audit import list_events
from tests.auth.jwks_server import AUDIENCE, JwksServer, SigningKey

ROUTE = "/api/t/sales/keys"  # tenant_admin route: carol (sales-admins) may call it


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict, payload: dict, signature: bytes = b"") -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64(signature)}"


def _claims(issuer: str, **over) -> dict:
    now = int(time.time())
    return {"iss": issuer, "aud": AUDIENCE, "sub": "carol", "iat": now, "exp": now + 300,
            "groups": ["sales", "sales-admins"], **over}


@pytest.fixture
def idp():
    server = JwksServer([SigningKey("RSA"), SigningKey("EC")])
    yield server
    server.close()


@pytest.fixture
def client(make_api_client, idp):
    return make_api_client(OIDC_ISSUER=idp.issuer, OIDC_API_AUDIENCE=AUDIENCE, OIDC_JWKS_MIN_REFRESH_S=0,
                           OIDC_LEEWAY_S=30)


def _call(client, token: str, *, tenant: str | None = "sales", route: str = ROUTE):
    headers = {"Authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["X-Tenant-ID"] = tenant
    return client.get(route, headers=headers)


def _last_denial(client) -> dict:
    services = client.app.state.services
    with services.db.session() as session:
        event = list_events(session=session, kind="denied", limit=1)[0]
        return event.model_dump()


def test_valid_tokens_pass_rsa_and_ec(client, idp):
    for key in idp.keys:
        r = _call(client, idp.token(key))
        assert r.status_code == 200, r.text
    me = client.get("/api/me", headers={"Authorization": f"Bearer {idp.token()}"}).json()
    assert me["auth"] == "jwt" and me["subject"] == "carol"
    assert me["tenants"] == {"sales": ["member", "tenant_admin"]}


def test_clock_skew_within_leeway_is_tolerated(client, idp):
    now = int(time.time())
    assert _call(client, idp.token(exp=now - 10)).status_code == 200
    assert _call(client, idp.token(nbf=now + 10)).status_code == 200


def _attacks(idp: JwksServer) -> dict[str, tuple[str, int, str]]:
    rsa_key, ec_key = idp.keys
    now = int(time.time())
    valid = idp.token(rsa_key)
    head, payload, sig = valid.split(".")
    tampered_payload = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_payload["groups"] = ["finance", "finance-admins"]
    impostor = SigningKey("RSA", kid=rsa_key.kid)  # same kid, attacker's key
    hs_sig = hmac.new(rsa_key.public_pem(), digestmod=hashlib.sha256)
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
    hs_payload = _claims(idp.issuer)
    hs_sig.update(f"{_b64(json.dumps(hs_header).encode())}.{_b64(json.dumps(hs_payload).encode())}".encode())
    return {
        "alg none": (_forge({"alg": "none", "typ": "JWT", "kid": rsa_key.kid}, _claims(idp.issuer)), 401,
                     "disallowed_algorithm"),
        "alg none, no kid": (_forge({"alg": "none"}, _claims(idp.issuer)), 401, "disallowed_algorithm"),
        "HS256 signed with the public key": (_forge(hs_header, hs_payload, hs_sig.digest()), 401,
                                             "disallowed_algorithm"),
        "expired": (idp.token(exp=now - 120), 401, "expired"),
        "not yet valid": (idp.token(nbf=now + 300), 401, "not_yet_valid"),
        "wrong issuer": (idp.token(iss="https://evil.example"), 401, "wrong_issuer"),
        "wrong audience": (idp.token(aud="some-other-api"), 401, "wrong_audience"),
        "unknown kid": (idp.token(SigningKey("RSA", kid="not-published")), 401, "unknown_kid"),
        "tampered payload": (f"{head}.{_b64(json.dumps(tampered_payload).encode())}.{sig}", 401, "bad_signature"),
        "signed by another key with a published kid": (idp.token(impostor), 401, "bad_signature"),
        "RSA kid with an EC algorithm": (idp.token(ec_key, headers={"kid": rsa_key.kid}), 401, "bad_signature"),
        "no exp": (idp.token(exp=None), 401, "malformed_token"),
        "garbage": ("not.a.jwt", 401, "malformed_token"),
    }


def test_attack_matrix(client, idp):
    for name, (token, status, reason) in _attacks(idp).items():
        r = _call(client, token)
        assert (r.status_code, r.json().get("error")) == (status, reason), f"{name}: {r.text}"
        assert r.json()["detail"], name
        if status == 401:
            assert "Bearer" in r.headers.get("www-authenticate", ""), name
        denial = _last_denial(client)
        assert (denial["status"], denial["reason"], denial["route"]) == (status, reason, ROUTE), name
        assert denial["ip"] and denial["tenant"] == "sales", name


def test_tenant_binding_for_jwt_callers(client, idp):
    token = idp.token()  # carol: sales only
    cases = [
        ("/api/t/finance/keys", "finance", 403, "tenant_mismatch"),  # URL tenant not among the token's
        ("/api/t/sales/keys", None, 403, "missing_tenant_header"),
        ("/api/t/sales/keys", "finance", 403, "tenant_header_mismatch"),
        ("/api/t/finance/keys", "sales", 403, "tenant_header_mismatch"),
    ]
    for route, header, status, reason in cases:
        r = _call(client, token, tenant=header, route=route)
        assert (r.status_code, r.json()["error"]) == (status, reason), (route, header, r.text)
        denial = _last_denial(client)
        assert (denial["subject"], denial["reason"], denial["status"]) == ("carol", reason, status)
    # the role still counts: a plain member's token may not manage keys
    r = _call(client, idp.token(sub="alice", groups=["sales"]))
    assert (r.status_code, r.json()["error"]) == (403, "missing_role")


def test_rotation_new_key_is_fetched_old_key_is_dropped(client, idp):
    old = idp.keys[0]
    assert _call(client, idp.token(old)).status_code == 200
    new = SigningKey("RSA")
    idp.keys = [new, idp.keys[1]]  # the IdP rotates: new key published, old one withdrawn
    hits = idp.jwks_hits
    assert _call(client, idp.token(new)).status_code == 200
    assert idp.jwks_hits == hits + 1
    r = _call(client, idp.token(old))
    assert (r.status_code, r.json()["error"]) == (401, "unknown_kid")


def test_unknown_kid_flood_does_not_hammer_the_idp(make_api_client, idp):
    client = make_api_client(OIDC_ISSUER=idp.issuer, OIDC_API_AUDIENCE=AUDIENCE, OIDC_JWKS_MIN_REFRESH_S=60)
    assert _call(client, idp.token()).status_code == 200
    hits = idp.jwks_hits
    for i in range(5):
        r = _call(client, idp.token(SigningKey("EC", kid=f"forged-{i}")))
        assert r.json()["error"] == "unknown_kid"
    assert idp.jwks_hits == hits  # within the refresh interval: no refetch at all


def test_jwt_refused_when_the_api_audience_is_not_configured(make_api_client, idp):
    client = make_api_client(OIDC_ISSUER=idp.issuer)  # no OIDC_API_AUDIENCE: JWTs are not accepted
    r = _call(client, idp.token())
    assert (r.status_code, r.json()["error"]) == (401, "jwt_not_configured")


def test_a_provider_key_by_mistake_is_named_as_such(make_api_client):
    client = make_api_client()  # no IdP configured either: the answer is about the key, not about JWTs
    r = client.get("/api/me", headers={"Authorization": "Bearer sk-proj-123"})
    assert (r.status_code, r.json()["error"]) == (401, "malformed_token")
    assert "model provider's key; Atrium's API keys start with atr_" in r.json()["detail"]


def test_malformed_authorization_header(client):
    for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer  "):
        r = client.get("/api/me", headers={"Authorization": header})
        assert (r.status_code, r.json()["error"]) == (401, "malformed_authorization"), header


def test_unreachable_idp_is_503_not_a_caller_error(make_api_client, idp):
    from tests.conftest import free_port

    client = make_api_client(OIDC_ISSUER=f"http://127.0.0.1:{free_port()}", OIDC_API_AUDIENCE=AUDIENCE)
    r = _call(client, idp.token())
    assert (r.status_code, r.json()["error"]) == (503, "idp_unavailable") and r.headers["retry-after"]
