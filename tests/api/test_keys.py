"""Tenant API keys: created by the tenant admin (HTTP) or the CLI, shown once, stored as a hash, scoped,
bound to one tenant, revocable — every refusal and every key change audited."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import sqlalchemy as sa

from backend.auth.api_keys import issue_key
from backend.db.repositories.audit import list_events
from tests.conftest import REPO


def _events(client, kind: str) -> list:
    with client.app.state.services.db.session() as session:
        return [e.model_dump() for e in list_events(session=session, kind=kind, limit=50)]


def _create(client, cookies, tenant="sales", scopes=("chat",), name="ci"):
    return client.post(f"/api/t/{tenant}/keys", json={"name": name, "scopes": list(scopes)}, cookies=cookies)


def _bearer(token: str, tenant: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if tenant:
        headers["X-Tenant-ID"] = tenant
    return headers


def test_tenant_admin_creates_a_key_shown_once_and_stored_as_hash(api_client, login_as, settings):
    r = _create(api_client, login_as("carol"), scopes=["chat", "admin"])
    assert r.status_code == 201, r.text
    body = r.json()
    token = body["token"]
    assert token.startswith(f"atr_{body['id']}_") and body["tenant"] == "sales"
    assert body["scopes"] == ["admin", "chat"] and body["created_by"] == "carol"

    listed = api_client.get("/api/t/sales/keys", cookies=login_as("carol")).json()
    assert [k["id"] for k in listed] == [body["id"]] and "token" not in listed[0]

    secret = token.split("_", 2)[2]
    engine = sa.create_engine(settings.sql_url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("select * from api_key where id = :id"), {"id": body["id"]}).mappings().one()
    engine.dispose()
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(dict(row)) and token not in str(dict(row))

    created = _events(api_client, "key_created")[0]
    assert (created["subject"], created["tenant"], created["detail"]["key_id"]) == ("carol", "sales", body["id"])

    me = api_client.get("/api/me", headers=_bearer(token)).json()
    assert me["auth"] == "api_key" and me["tenants"] == {"sales": ["member", "tenant_admin"]}
    assert me["scopes"] == ["admin", "chat"]


def test_only_tenant_admins_manage_keys(api_client, login_as):
    for user, tenant, reason in (("alice", "sales", "missing_role"), ("bob", "sales", "missing_role"),
                                 ("fiona", "sales", "tenant_mismatch"), ("root", "sales", "tenant_mismatch")):
        r = _create(api_client, login_as(user), tenant=tenant)
        assert (r.status_code, r.json()["error"]) == (403, reason), (user, r.text)
    assert _create(api_client, login_as("fiona"), tenant="finance").status_code == 201
    assert _create(api_client, None).status_code == 401


def test_bad_scopes_are_a_clear_422(api_client, login_as):
    r = _create(api_client, login_as("carol"), scopes=["chat", "superuser"])
    assert r.status_code == 422 and "superuser" in r.json()["detail"] and "prompts:read" in r.json()["detail"]
    assert _create(api_client, login_as("carol"), scopes=[]).status_code == 422


def test_key_is_bound_to_its_tenant(api_client, login_as):
    token = _create(api_client, login_as("carol"), scopes=["admin"]).json()["token"]
    assert api_client.get("/api/t/sales/keys", headers=_bearer(token)).status_code == 200
    assert api_client.get("/api/t/sales/keys", headers=_bearer(token, "sales")).status_code == 200
    r = api_client.get("/api/t/finance/keys", headers=_bearer(token))
    assert (r.status_code, r.json()["error"]) == (403, "tenant_mismatch")
    r = api_client.get("/api/t/finance/keys", headers=_bearer(token, "finance"))
    assert (r.status_code, r.json()["error"]) == (403, "tenant_mismatch")
    r = api_client.get("/api/t/sales/keys", headers=_bearer(token, "finance"))
    assert (r.status_code, r.json()["error"]) == (403, "tenant_header_mismatch")
    denial = _events(api_client, "denied")[0]
    assert denial["subject"].startswith("key:") and denial["status"] == 403
    # The header twice ("sales", then "finance"): which one a proxy passes on first is not ours to guess.
    r = api_client.get("/api/t/sales/keys", headers=[("Authorization", f"Bearer {token}"), ("X-Tenant-ID", "sales"),
                                                     ("X-Tenant-ID", "finance")])
    assert (r.status_code, r.json()["error"]) == (403, "tenant_header_repeated")
    assert _events(api_client, "denied")[0]["detail"]["header_tenants"] == ["sales", "finance"]


def test_missing_scope_is_refused(api_client, login_as):
    token = _create(api_client, login_as("carol"), scopes=["chat", "retrieval"]).json()["token"]
    r = api_client.post("/api/t/sales/keys", json={"scopes": ["admin"]}, headers=_bearer(token))
    assert (r.status_code, r.json()["error"]) == (403, "missing_scope")
    assert "admin" in r.json()["detail"]
    denial = _events(api_client, "denied")[0]
    assert (denial["reason"], denial["tenant"], denial["detail"]["required"]) == ("missing_scope", "sales", "admin")


def test_revoked_and_forged_keys_are_refused(api_client, login_as):
    carol = login_as("carol")
    issued = _create(api_client, carol, scopes=["admin"]).json()
    assert api_client.get("/api/t/sales/keys", headers=_bearer(issued["token"])).status_code == 200

    # another tenant's admin cannot revoke it (looks like a missing key), the owner can
    r = api_client.delete(f"/api/t/finance/keys/{issued['id']}", cookies=login_as("fiona"))
    assert r.status_code == 404
    r = api_client.delete(f"/api/t/sales/keys/{issued['id']}", cookies=carol)
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert _events(api_client, "key_revoked")[0]["detail"]["key_id"] == issued["id"]

    r = api_client.get("/api/t/sales/keys", headers=_bearer(issued["token"]))
    assert (r.status_code, r.json()["error"]) == (401, "revoked_api_key")
    assert r.json()["detail"].endswith(": ask a tenant admin for a new one")  # what to do, as for an expired key
    wrong_secret = issued["token"][:-4] + ("AAAA" if not issued["token"].endswith("AAAA") else "BBBB")
    r = api_client.get("/api/t/sales/keys", headers=_bearer(wrong_secret))
    assert (r.status_code, r.json()["error"]) == (401, "unknown_api_key")
    r = api_client.get("/api/t/sales/keys", headers=_bearer("atr_nonsense"))
    assert (r.status_code, r.json()["error"]) == (401, "malformed_api_key")
    reasons = [e["reason"] for e in _events(api_client, "denied")[:3]]
    assert reasons == ["malformed_api_key", "unknown_api_key", "revoked_api_key"]


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {"ATRIUM_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "backend.cli", "keys", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


def test_cli_creates_a_working_key_and_revokes_it(make_api_client, settings):
    api_client = make_api_client(ATRIUM_API_KEY_CACHE_SECONDS="0")  # every request asks the database
    token = _cli(settings, "create", "--tenant", "engineering", "--scopes", "chat,prompts:read").stdout
    token = token.strip().splitlines()[-1]
    me = api_client.get("/api/me", headers=_bearer(token)).json()
    assert me["tenants"] == {"engineering": ["member"]} and me["scopes"] == ["chat", "prompts:read"]
    key_id = token.split("_")[1]
    assert _cli(settings, "revoke", "--tenant", "engineering", key_id).stdout.strip() == f"revoked key {key_id}"
    r = api_client.get("/api/me", headers=_bearer(token))
    assert (r.status_code, r.json()["error"]) == (401, "revoked_api_key")
    again = _cli(settings, "revoke", "--tenant", "engineering", key_id)  # idempotent, and audited once
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"key {key_id} was already revoked on 20") and again.stdout.strip().endswith("UTC")
    with api_client.app.state.services.db.session() as s:
        revoked = [e for e in list_events(session=s, kind="key_revoked") if e.detail.get("key_id") == key_id]
    assert len(revoked) == 1
    bad = _cli(settings, "create", "--tenant", "nope", "--scopes", "chat")
    assert bad.returncode == 2 and "unknown tenant" in bad.stderr


def test_a_revoke_from_another_process_applies_within_the_key_cache_time(api_client, settings):
    """Verified keys are remembered ATRIUM_API_KEY_CACHE_SECONDS (default 5): the CLI (or another replica)
    cannot reach this process's memory, so its revocation applies when the entry expires, not later."""
    now = [1000.0]
    api_client.app.state.services.api_keys._clock = lambda: now[0]
    token = _cli(settings, "create", "--tenant", "sales", "--scopes", "chat").stdout.strip().splitlines()[-1]
    assert api_client.get("/api/me", headers=_bearer(token)).status_code == 200
    assert _cli(settings, "revoke", "--tenant", "sales", token.split("_")[1]).returncode == 0
    assert api_client.get("/api/me", headers=_bearer(token)).status_code == 200  # still remembered
    now[0] += 5.01
    r = api_client.get("/api/me", headers=_bearer(token))
    assert (r.status_code, r.json()["error"]) == (401, "revoked_api_key")
    assert _events(api_client, "denied")[0]["reason"] == "revoked_api_key"


def test_revoking_twice_is_idempotent_and_audited_once(api_client, login_as, settings):
    carol = login_as("carol")
    issued = _create(api_client, carol).json()
    first = api_client.delete(f"/api/t/sales/keys/{issued['id']}", cookies=carol)
    assert first.status_code == 200 and first.json()["already_revoked"] is False
    again = api_client.delete(f"/api/t/sales/keys/{issued['id']}", cookies=carol)
    assert again.status_code == 200 and again.json()["already_revoked"] is True
    assert again.json()["revoked_at"] == first.json()["revoked_at"]  # the original revocation, not now
    assert [e["detail"]["key_id"] for e in _events(api_client, "key_revoked")] == [issued["id"]]
    # The CLI's second revoke: test_cli_creates_a_working_key_and_revokes_it.


def test_a_key_of_a_tenant_no_longer_configured_says_so(api_client):
    services = api_client.app.state.services
    token = issue_key(db=services.db, tenant="legal", scopes=["chat"]).token  # legal since removed from tenants.yaml
    r = api_client.get("/api/t/legal/v1/models", headers=_bearer(token))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "tenant_not_configured")
    assert "'legal' is not configured" in r.json()["error"]["message"]
    r = api_client.get("/api/t/sales/v1/models", headers=_bearer(token))
    assert r.status_code == 403 and "belongs to another tenant" in r.json()["error"]["message"]
