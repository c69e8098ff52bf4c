"""Manual self-test of tests/oidc/server.mjs (not collected by pytest). Needs httpx and pyjwt[crypto].

python tests/oidc/selftest.py
"""

import base64
import hashlib
import json
import secrets
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oidc_provider import API_AUDIENCE, API_RESOURCE, generate_keys_file, start_oidc_provider  # noqa: E402

REDIRECT = "http://127.0.0.1:8123/chat/auth/oauth/oidc/callback"


def authorize(op, http, user, *, resource=None, scope="openid profile email groups", nonce="n"):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(8)
    meta = http.get(op.discovery_url).json()
    params = {
        "client_id": op.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if resource:
        params["resource"] = resource
    location = op.login(
        f"{meta['authorization_endpoint']}?{urlencode(params)}",
        user,
        "pw",
        http,
        follow_to_redirect_uri=False,
    )
    assert location.startswith(REDIRECT), location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state], query
    return meta, query["code"][0], verifier


def verify(op, meta, token, audience, **kw):
    key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=op.issuer, **kw)


def main():
    with start_oidc_provider([REDIRECT]) as op, httpx.Client() as http:
        # 1. dave, PKCE + nonce + resource, client_secret_basic
        meta, code, verifier = authorize(
            op,
            http,
            "dave",
            resource=API_RESOURCE,
            scope="openid profile email groups api",
            nonce="nonce-123",
        )
        tok = http.post(
            meta["token_endpoint"],
            auth=(op.client_id, op.client_secret),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
        )
        assert tok.status_code == 200, tok.text
        tok = tok.json()
        idt = verify(op, meta, tok["id_token"], "atrium")
        assert idt["nonce"] == "nonce-123" and idt["sub"] == "dave", idt
        assert idt["groups"] == ["engineering", "engineering-editors"], idt
        assert (
            idt["preferred_username"] == "dave"
            and idt["email"] == "dave@example.test"
            and idt["name"] == "Dave"
        )
        at = verify(op, meta, tok["access_token"], API_AUDIENCE)
        assert jwt.get_unverified_header(tok["access_token"])["typ"] == "at+jwt"
        assert (
            at["sub"] == "dave" and at["groups"] == ["engineering", "engineering-editors"] and "exp" in at
        ), at
        print("dave id_token:", idt)
        print("dave access_token:", at)
        assert "refresh_token" in tok

        # 2. kc via client_secret_post, no resource -> opaque token, userinfo has realm_access
        http.cookies.clear()
        meta, code, verifier = authorize(op, http, "kc")
        tok = http.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
                "client_id": op.client_id,
                "client_secret": op.client_secret,
            },
        )
        assert tok.status_code == 200, tok.text
        tok = tok.json()
        idt = verify(op, meta, tok["id_token"], "atrium")
        assert idt["realm_access"] == {"roles": ["engineering"]} and "groups" not in idt, idt
        ui = http.get(
            meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tok['access_token']}"}
        ).json()
        assert ui["realm_access"] == {"roles": ["engineering"]} and ui["sub"] == "kc", ui
        print("kc userinfo:", ui)

        # 3. wrong password -> 401 form, no redirect; nobody -> groups []
        http.cookies.clear()
        r = op.login(
            f"{meta['authorization_endpoint']}?"
            + urlencode(
                {
                    "client_id": op.client_id,
                    "response_type": "code",
                    "redirect_uri": REDIRECT,
                    "scope": "openid",
                }
            ),
            "alice",
            "nope",
            http,
            follow_to_redirect_uri=False,
        )
        assert isinstance(r, httpx.Response) and r.status_code == 401, r
        http.cookies.clear()
        meta, code, verifier = authorize(op, http, "nobody")
        tok = http.post(
            meta["token_endpoint"],
            auth=(op.client_id, op.client_secret),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
        ).json()
        assert verify(op, meta, tok["id_token"], "atrium")["groups"] == []

        # 4. bad client secret rejected
        r = http.post(
            meta["token_endpoint"],
            auth=(op.client_id, "wrong"),
            data={"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT},
        )
        assert r.status_code == 401, r.text

    # 5. key rotation: restart with a keys file, kid changes to the file's key
    with tempfile.TemporaryDirectory() as d:
        keys = generate_keys_file(Path(d) / "keys.json")
        with start_oidc_provider([REDIRECT], keys_file=keys) as op, httpx.Client() as http:
            expected = json.loads(Path(keys).read_text())["keys"][0]["kid"]
            meta, code, verifier = authorize(op, http, "erin")
            tok = http.post(
                meta["token_endpoint"],
                auth=(op.client_id, op.client_secret),
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
            ).json()
            assert jwt.get_unverified_header(tok["id_token"])["kid"] == expected
            jwks = http.get(meta["jwks_uri"]).json()
            assert [k["kid"] for k in jwks["keys"]] == [expected] and "d" not in jwks["keys"][0]
    print("SELFTEST OK")


if __name__ == "__main__":
    main()
