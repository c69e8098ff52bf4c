"""Browser sessions end: a password login's groups are read from demo_users.yaml on every request (removing
someone from a department applies at once), and a session lasts ATRIUM_SESSION_HOURS, however long its cookie
claims to live."""

from __future__ import annotations

import shutil
import time

import httpx
import jwt
import yaml
from chainlit.auth.jwt import get_jwt_secret
from chainlit.config import config as chainlit_config

from tests.conftest import REPO, session_cookie_for

SECRET = "session-tests-" + "s" * 40


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"access_token={token}"}


def test_a_demo_user_removed_from_a_department_loses_it_on_the_next_request(tmp_path, make_api_client,
                                                                            monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    carol = cookie(session_cookie_for("carol")["access_token"])  # signed in as a Sales admin

    users = yaml.safe_load((config / "demo_users.yaml").read_text())
    for u in users["users"]:
        if u["username"] == "carol":
            u["claims"]["groups"] = []  # the operator removes her from Sales (and restarts)
    (config / "demo_users.yaml").write_text(yaml.safe_dump(users, sort_keys=False))
    api = make_api_client(ATRIUM_CONFIG_DIR=str(config))

    me = api.get("/api/me", headers=carol).json()
    assert me["tenants"] == {}, "her old cookie no longer carries Sales"
    refused = api.post("/api/t/sales/keys", headers=carol, json={"scopes": ["admin"], "name": "backdoor"})
    assert refused.status_code == 403
    assert api.get("/api/t/sales/documents", headers=carol).status_code == 403

    users["users"] = [u for u in users["users"] if u["username"] != "carol"]  # the account is deleted
    (config / "demo_users.yaml").write_text(yaml.safe_dump(users, sort_keys=False))
    gone = make_api_client(ATRIUM_CONFIG_DIR=str(config)).get("/api/me", headers=carol)
    assert gone.status_code == 401 and "no longer in demo_users.yaml" in gone.json()["detail"]


def test_a_session_older_than_the_configured_hours_is_over(make_api_client, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)
    api = make_api_client(ATRIUM_SESSION_HOURS="2")
    assert chainlit_config.project.user_session_timeout == 7200
    fresh = session_cookie_for("alice")["access_token"]
    assert api.get("/api/me", headers=cookie(fresh)).status_code == 200

    # A cookie signed three hours ago with a 15-day expiry (as issued before the lifetime was shortened).
    claims = jwt.decode(fresh, get_jwt_secret(), algorithms=["HS256"])
    claims.update(iat=int(time.time()) - 3 * 3600, exp=int(time.time()) + 15 * 86400)
    stale = jwt.encode(claims, get_jwt_secret(), algorithm="HS256")
    assert api.get("/api/me", headers=cookie(stale)).status_code == 401
    assert api.get("/studio", headers=cookie(stale)).status_code == 401


def test_the_login_cookie_lives_the_configured_hours(live_server):
    r = httpx.post(f"{live_server.url}/chat/login", data={"username": "alice", "password": "atrium"}, timeout=30)
    r.raise_for_status()
    set_cookie = r.headers["set-cookie"].lower()
    assert "max-age=43200" in set_cookie, set_cookie  # ATRIUM_SESSION_HOURS' default, 12 h
