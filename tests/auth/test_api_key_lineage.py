"""API key lineage (issue 14, finding 3): a key made by a key belongs to the same person, approval compares
people, revoking a key revokes the keys made through it, keys expire (never after their parent), and an admin
sees keys whose owner no longer holds the rights their scopes need."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from sqlmodel import select

from backend.auth.api_keys import KeyCache, issue_key, people_behind
from backend.auth.demo_users import DemoUser
from backend.db.migrate import alembic_config, upgrade
from backend.db.models import ApiKey, AuditEvent
from tests.conftest import REPO, session_token

FA = "/api/t/finance/prompts/finance-assistant"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The repo's config plus gwen, a second finance admin (the demo has only fiona)."""
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    users = yaml.safe_load((root / "demo_users.yaml").read_text())
    fiona = next(u for u in users["users"] if u["username"] == "fiona")
    users["users"].append({"username": "gwen", "password_hash": fiona["password_hash"],
                           "claims": {"name": "Gwen Grey", "groups": ["finance", "finance-admins"]}})
    (root / "demo_users.yaml").write_text(yaml.safe_dump(users))
    return root


@pytest.fixture
def client(make_api_client, prompts_root, config_dir, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "lineage-tests-" + "k" * 40)
    return make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root), ATRIUM_CONFIG_DIR=str(config_dir))


def person(config_dir: Path, user: str) -> dict[str, str]:
    """A signed session cookie for a demo user of `config_dir`, as the app signs it at login."""
    users = yaml.safe_load((config_dir / "demo_users.yaml").read_text())["users"]
    claims = DemoUser.model_validate(next(u for u in users if u["username"] == user)).full_claims()
    return {"Cookie": f"access_token={session_token(user, claims, provider='password')}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_key(client, headers: dict[str, str], *scopes: str, **extra) -> dict:
    r = client.post("/api/t/finance/keys", headers=headers, json={"scopes": list(scopes), **extra})
    assert r.status_code == 201, r.text
    return r.json()


def events(client, kind: str) -> list[AuditEvent]:
    with client.app.state.services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)))


def set_expiry(client, key_id: str, at: datetime) -> None:
    with client.app.state.services.db.session() as s:
        row = s.get(ApiKey, key_id)
        row.expires_at = at
        s.add(row)
        s.commit()


def test_a_key_made_by_a_key_cannot_get_its_owner_past_the_four_eyes_rule(client, config_dir):
    fiona, gwen = person(config_dir, "fiona"), person(config_dir, "gwen")
    k1 = make_key(client, fiona, "admin", "prompts:write")
    k2 = make_key(client, bearer(k1["token"]), "prompts:write")
    assert k2["created_by"] == f"key:{k1['id']}"
    v1 = client.get(f"{FA}/versions/1", headers=fiona).json()
    r = client.post(f"{FA}/versions", headers=bearer(k2["token"]), json={
        "body": v1["body"] + "\nVia a key of a key.\n", "config": v1["config"], "message": "chained",
        "base_version": 1})
    assert r.status_code == 201, r.text

    for who in (fiona, bearer(k1["token"])):
        r = client.put(f"{FA}/labels/production", headers=who, json={"version": 2})
        assert (r.status_code, r.json()["error"]) == (403, "approval_required"), r.text
        assert "second person" in r.json()["detail"]
    denied = [e for e in events(client, "denied") if e.reason == "approval_required"]
    assert [e.subject for e in denied] == ["fiona", f"key:{k1['id']}"]
    assert client.get(FA, headers=fiona).json()["labels"]["production"] == 1
    saved = client.get(f"{FA}/versions/2", headers=fiona).json()["config"]
    assert (saved["author"], saved["author_for"]) == (f"key:{k2['id']}", "fiona")  # the person, not key:K1
    assert (k2["owner"], k2["parent_key_id"]) == ("fiona", k1["id"])

    r = client.put(f"{FA}/labels/production", headers=gwen, json={"version": 2})
    assert r.status_code == 200, r.text
    assert client.get(FA, headers=fiona).json()["labels"]["production"] == 2


def test_a_version_recorded_under_a_parent_key_is_still_its_owners(client, config_dir):
    """Versions saved before keys recorded their owner carry `author_for: key:<parent>`: resolved to the person."""
    k1 = make_key(client, person(config_dir, "fiona"), "admin")
    k2 = make_key(client, bearer(k1["token"]), "prompts:write")
    db = client.app.state.services.db
    assert "fiona" in people_behind(db=db, names=[f"key:{k2['id']}", f"key:{k1['id']}"])
    assert people_behind(db=db, names=["key:nosuchkey", "frank"]) == {"key:nosuchkey", "frank"}


def test_revoking_a_key_revokes_every_key_made_through_it_at_once(client, config_dir):
    fiona = person(config_dir, "fiona")
    k1 = make_key(client, fiona, "admin")
    k2 = make_key(client, bearer(k1["token"]), "admin")
    k3 = make_key(client, bearer(k2["token"]), "chat")
    sibling = make_key(client, fiona, "chat")
    for k in (k2, k3):  # verified once: now in this replica's key cache
        assert client.get("/api/me", headers=bearer(k["token"])).status_code == 200

    revocation = client.delete(f"/api/t/finance/keys/{k1['id']}", headers=fiona)
    assert revocation.status_code == 200, revocation.text
    for k in (k1, k2, k3):
        r = client.get("/api/me", headers=bearer(k["token"]))
        assert (r.status_code, r.json()["error"]) == (401, "revoked_api_key"), k["id"]
    assert revocation.json()["already_revoked"] is False
    assert revocation.json()["also_revoked"] == [k2["id"], k3["id"]]
    assert client.get("/api/me", headers=bearer(sibling["token"])).status_code == 200
    revoked = [(e.detail["key_id"], e.detail.get("via")) for e in events(client, "key_revoked")]
    assert revoked == [(k1["id"], None), (k2["id"], k1["id"]), (k3["id"], k1["id"])]

    again = client.delete(f"/api/t/finance/keys/{k1['id']}", headers=fiona).json()
    assert again["already_revoked"] is True and again["also_revoked"] == []
    assert len(events(client, "key_revoked")) == 3


def test_an_expired_key_is_a_401_and_audited(client, config_dir):
    fiona = person(config_dir, "fiona")
    key = make_key(client, fiona, "chat", expires_in_days=1)
    expires = datetime.fromisoformat(key["expires_at"]).replace(tzinfo=UTC)
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(days=1)
    set_expiry(client, key["id"], datetime.now(UTC) - timedelta(seconds=1))
    r = client.get("/api/me", headers=bearer(key["token"]))
    assert (r.status_code, r.json()["error"]) == (401, "expired_api_key")
    denied = [e for e in events(client, "denied") if e.reason == "expired_api_key"]
    assert [(e.subject, e.detail["key_id"]) for e in denied] == [(f"key:{key['id']}", key["id"])]
    listed = {k["id"]: k for k in client.get("/api/t/finance/keys", headers=fiona).json()}
    assert listed[key["id"]]["state"] == "expired"


def test_expiry_default_and_bounds(make_api_client, prompts_root, config_dir, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "lineage-tests-" + "k" * 40)
    fiona = person(config_dir, "fiona")
    client = make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root), ATRIUM_CONFIG_DIR=str(config_dir))
    default = datetime.fromisoformat(make_key(client, fiona, "chat")["expires_at"]).replace(tzinfo=UTC)
    assert timedelta(days=89) < default - datetime.now(UTC) <= timedelta(days=90)
    for bad in (-1, 3651, "soon"):
        r = client.post("/api/t/finance/keys", headers=fiona, json={"scopes": ["chat"], "expires_in_days": bad})
        assert r.status_code == 422, (bad, r.text)
    never = make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root), ATRIUM_CONFIG_DIR=str(config_dir),
                            ATRIUM_API_KEY_DAYS="0")
    assert make_key(never, fiona, "chat")["expires_at"] is None


def test_zero_days_is_no_expiry_as_in_the_cli(client, config_dir):
    """`expires_in_days: 0` was a 422, while `atrium keys create --expires-days 0` and ATRIUM_API_KEY_DAYS=0 mean no
    expiry: the API means the same now, and says so in its schema. Under a key that expires it is refused (the
    child would outlive its parent), with the way out."""
    fiona = person(config_dir, "fiona")
    forever = make_key(client, fiona, "admin", expires_in_days=0)
    assert forever["expires_at"] is None
    listed = {k["id"]: k for k in client.get("/api/t/finance/keys", headers=fiona).json()}
    assert (listed[forever["id"]]["expires_at"], listed[forever["id"]]["state"]) == (None, "active")
    assert make_key(client, bearer(forever["token"]), "chat", expires_in_days=0)["expires_at"] is None
    field = client.get("/openapi.json").json()["components"]["schemas"]["KeyCreate"]["properties"]["expires_in_days"]
    number = next(option for option in field["anyOf"] if option.get("type") == "integer")
    assert number["minimum"] == 0 and "0: no expiry" in field["description"]

    mortal = make_key(client, fiona, "admin", expires_in_days=10)
    r = client.post("/api/t/finance/keys", headers=bearer(mortal["token"]),
                    json={"scopes": ["chat"], "expires_in_days": 0})
    assert (r.status_code, r.json()["error"]) == (422, "expiry_beyond_parent"), r.text
    assert "ask for 1 to 9 day(s), or leave expires_in_days out" in r.json()["detail"]
    # With under a day left, 0 days would not be "at most that": leaving it out is the one way, and all it says.
    set_expiry(client, mortal["id"], datetime.now(UTC) + timedelta(hours=12))
    r = client.post("/api/t/finance/keys", headers=bearer(mortal["token"]),
                    json={"scopes": ["chat"], "expires_in_days": 0})
    assert (r.status_code, r.json()["error"]) == (422, "expiry_beyond_parent"), r.text
    assert "UTC; leave expires_in_days out to get that key's expiry" in r.json()["detail"]
    assert make_key(client, bearer(mortal["token"]), "chat")["expires_at"] is not None


def test_a_key_never_outlives_the_key_that_made_it(client, config_dir):
    k1 = make_key(client, person(config_dir, "fiona"), "admin", expires_in_days=10)
    parent_expiry = k1["expires_at"]
    r = client.post("/api/t/finance/keys", headers=bearer(k1["token"]),
                    json={"scopes": ["chat"], "expires_in_days": 30})
    assert (r.status_code, r.json()["error"]) == (422, "expiry_beyond_parent"), r.text
    assert "cannot outlive" in r.json()["detail"]
    # Left out, the default (90 days) is cut to the parent's expiry; a shorter one is kept.
    assert make_key(client, bearer(k1["token"]), "chat")["expires_at"] == parent_expiry
    shorter = make_key(client, bearer(k1["token"]), "chat", expires_in_days=5)["expires_at"]
    assert shorter < parent_expiry


def test_the_key_cache_never_serves_a_key_past_its_expiry(services):
    now = [0.0]
    cache = KeyCache(ttl_s=300, clock=lambda: now[0])
    issued = issue_key(db=services.db, tenant="sales", scopes=["chat"], created_by="carol", expires_in_days=1)
    with services.db.session() as s:
        row = s.get(ApiKey, issued.key.id)
        row.expires_at = datetime.now(UTC) + timedelta(seconds=30)
        s.add(row)
        s.commit()
    assert cache.verify(db=services.db, token=issued.token).owner == "carol"
    now[0] = 25.0
    assert cache.get(issued.token) is not None
    now[0] = 31.0  # past the key's expiry, well within the cache's 300 s
    assert cache.get(issued.token) is None


def test_admins_see_keys_whose_owner_left(client, config_dir):
    fiona, gwen = person(config_dir, "fiona"), person(config_dir, "gwen")
    fionas = make_key(client, fiona, "admin")
    fionas_child = make_key(client, bearer(fionas["token"]), "chat")
    gwens = make_key(client, gwen, "admin")
    conversations = client.app.state.services.conversations
    # fiona's latest sign-in came from the IdP without finance-admins: she is a member, no longer an admin.
    conversations.remember_user(identifier="fiona", display_name="Fiona Fox", provider="oidc",
                                claims={"iss": "https://idp.example", "sub": "fiona", "groups": ["finance"]})
    users = yaml.safe_load((config_dir / "demo_users.yaml").read_text())["users"]
    gwen_claims = DemoUser.model_validate(next(u for u in users if u["username"] == "gwen")).full_claims()
    conversations.remember_user(identifier="gwen", display_name="Gwen Grey", provider="password", claims=gwen_claims)
    cli = issue_key(db=client.app.state.services.db, tenant="finance", scopes=["chat"], created_by="cli")

    listed = {k["id"]: k for k in client.get("/api/t/finance/keys", headers=gwen).json()}
    status = {kid: (k["owner"], k["owner_status"]) for kid, k in listed.items()}
    assert status[fionas["id"]] == ("fiona", "left")  # an admin key; she no longer holds admin
    assert status[fionas_child["id"]] == ("fiona", "active")  # a chat key: a member still may chat
    assert status[gwens["id"]] == ("gwen", "active")
    assert status[cli.key.id] == ("cli", "unknown")
    assert listed[fionas["id"]]["owner_seen_at"] is not None and listed[cli.key.id]["owner_seen_at"] is None
    assert listed[fionas_child["id"]]["parent_key_id"] == fionas["id"]


def _atrium(data_dir: Path, config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir), "ATRIUM_CONFIG_DIR": str(config_dir)}
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_expiry_owner_status_and_cascading_revoke(data_dir, config_dir, services):
    out = _atrium(data_dir, config_dir, "keys", "create", "--tenant", "finance", "--scopes", "admin",
                  "--expires-days", "7")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    root = services.db
    parent = token.split("_")[1]
    child = issue_key(db=root, tenant="finance", scopes=["chat"], created_by=f"key:{parent}", parent_key_id=parent)
    with root.session() as s:
        expiry = s.get(ApiKey, parent).expires_at
    assert timedelta(days=6) < expiry.replace(tzinfo=UTC) - datetime.now(UTC) <= timedelta(days=7)
    assert child.key.owner == "cli" and child.key.expires_at == expiry  # clamped to the parent's 7 days
    bad = _atrium(data_dir, config_dir, "keys", "create", "--tenant", "finance", "--scopes", "chat",
                  "--expires-days", "4000")
    assert bad.returncode == 2 and "3650" in bad.stderr

    listed = _atrium(data_dir, config_dir, "keys", "list", "--tenant", "finance").stdout
    lines = {line.split()[0]: line for line in listed.splitlines()[1:]}
    assert "cli (unknown)" in lines[parent] and f"{expiry:%Y-%m-%d}" in lines[parent]
    assert parent in lines[child.key.id]

    revoked = _atrium(data_dir, config_dir, "keys", "revoke", "--tenant", "finance", parent)
    assert revoked.returncode == 0 and child.key.id in revoked.stdout, revoked.stdout
    listed = _atrium(data_dir, config_dir, "keys", "list", "--tenant", "finance").stdout
    assert all(" revoked " in line for line in listed.splitlines()[1:]), listed


# -- the migration's backfill ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'backfill.db'}"
    return request.getfixturevalue("postgres_url")


def test_the_migration_backfills_owner_and_parent_from_created_by(empty_db_url):
    command.upgrade(alembic_config(empty_db_url), "0004_conversation_elements")
    engine = sa.create_engine(empty_db_url)
    created = {"k1": "fiona", "k2": "key:k1", "k3": "key:k2", "kc": "cli", "korphan": "key:gone", "knone": None}
    with engine.begin() as conn:
        for kid, by in created.items():
            conn.execute(sa.text("insert into api_key (id, tenant, name, key_hash, scopes, created_by, created_at) "
                                 "values (:id, 'finance', '', 'h', '[]', :by, :at)"),
                         {"id": kid, "by": by, "at": datetime.now(UTC)})
    upgrade(empty_db_url)
    with engine.connect() as conn:
        rows = {r.id: (r.owner, r.parent_key_id, r.expires_at) for r in
                conn.execute(sa.text("select id, owner, parent_key_id, expires_at from api_key"))}
    engine.dispose()
    assert rows == {"k1": ("fiona", None, None), "k2": ("fiona", "k1", None), "k3": ("fiona", "k2", None),
                    "kc": ("cli", None, None), "korphan": (None, "gone", None), "knone": (None, None, None)}
