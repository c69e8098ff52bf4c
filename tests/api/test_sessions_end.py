"""Admins end a user's browser sessions (issue 14): a tenant admin for a member of their tenant, a platform admin for
anyone. The user's cookies stop working at once (API, chat routes, chat socket) while a new sign-in works; a tenant
admin cannot reach another tenant's users, and cannot even tell whether they exist."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.test_session_lifetime import SECRET, chat_user, me, sign_in, socket_connects
from tests.conftest import start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("sessions-end"), {"CHAINLIT_AUTH_SECRET": SECRET})
    yield srv
    stop_server(srv)


def end(server, admin: dict[str, str], subject: str, tenant: str | None = None) -> httpx.Response:
    path = f"/api/t/{tenant}/sessions/end" if tenant else "/api/admin/sessions/end"
    return httpx.post(f"{server.url}{path}", cookies=admin, json={"subject": subject},
                      headers={"Origin": server.url}, timeout=30)


async def test_an_admin_ending_alices_sessions_makes_her_cookies_401_and_a_new_sign_in_works(server):
    laptop, phone = sign_in(server, "alice"), sign_in(server, "alice")
    carol = sign_in(server, "carol")  # Sales admin
    assert me(server, laptop).status_code == 200 and me(server, phone).status_code == 200

    r = end(server, carol, "alice", tenant="sales")
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "alice" and r.json()["ended"] == 2
    for old in (laptop, phone):
        refused = me(server, old)
        assert (refused.status_code, refused.json()["error"]) == (401, "session_ended")
        assert chat_user(server, old) == 401
    assert not await socket_connects(server, laptop)
    assert me(server, carol).status_code == 200, "the admin's own session is untouched"

    again = sign_in(server, "alice")
    assert me(server, again).status_code == 200 and chat_user(server, again) == 200
    assert await socket_connects(server, again)
    events = server.rows("select subject, tenant, detail from audit_event where kind = 'sessions_ended'")
    assert [(e["subject"], e["tenant"]) for e in events] == [("carol", "sales")]
    assert '"target": "alice"' in events[0]["detail"] and '"ended": 2' in events[0]["detail"]

    # A platform admin, through the explicit admin route: any user.
    r = end(server, sign_in(server, "root"), "alice")
    assert (r.status_code, r.json()["ended"]) == (200, 1)
    assert me(server, again).status_code == 401
    assert server.rows("select tenant from audit_event where kind = 'sessions_ended' and subject = 'root'") \
        == [{"tenant": None}]


def test_a_tenant_admin_cannot_end_another_tenants_users_sessions(server):
    frank = sign_in(server, "frank")  # Finance only
    maria = sign_in(server, "maria")  # Sales and Finance
    carol = sign_in(server, "carol")  # Sales admin

    refused = end(server, carol, "frank", tenant="sales")
    unknown = end(server, carol, "no-such-user", tenant="sales")
    assert refused.status_code == unknown.status_code == 404
    assert refused.json()["error"] == unknown.json()["error"] == "unknown_subject"
    assert refused.json()["detail"].replace("frank", "X") == unknown.json()["detail"].replace("no-such-user", "X"), \
        "a user of another tenant looks exactly like one who does not exist"
    assert me(server, frank).status_code == 200, "frank's session goes on"
    # Both audited alike (repeats within a minute share one row and its count): Sales' log tells them apart no more.
    denied = server.rows("select distinct subject, tenant, status, reason from audit_event where kind = 'denied' "
                         "and route = '/api/t/sales/sessions/end'")
    assert denied == [{"subject": "carol", "tenant": "sales", "status": 404, "reason": "unknown_subject"}]

    # Fiona, Finance's admin, may; and Carol may end Maria's (a Sales member, in Finance too).
    assert end(server, sign_in(server, "fiona"), "frank", tenant="finance").json()["ended"] == 1
    assert me(server, frank).status_code == 401
    assert end(server, carol, "maria", tenant="sales").status_code == 200
    assert me(server, maria).status_code == 401


def test_who_may_end_sessions_and_what_the_request_must_say(make_api_client, login_as):
    api = make_api_client()
    api.app.state.services.conversations.remember_user(identifier="bob", display_name="Bob", provider="password",
                                                       claims={"sub": "bob", "groups": ["sales"]})
    body = {"subject": "bob"}
    r = api.post("/api/t/sales/sessions/end", json=body, cookies=login_as("alice"))  # a member, not an admin
    assert (r.status_code, r.json()["error"]) == (403, "missing_role")
    r = api.post("/api/admin/sessions/end", json=body, cookies=login_as("carol"))  # a tenant admin
    assert (r.status_code, r.json()["error"]) == (403, "missing_role")
    assert api.post("/api/t/sales/sessions/end", json=body).status_code == 401
    for bad in ({}, {"subject": ""}, {"subject": "bob", "tenant": "finance"}, {"subject": "x" * 257}):
        r = api.post("/api/t/sales/sessions/end", json=bad, cookies=login_as("carol"))
        assert r.status_code == 422, (bad, r.text)
    r = api.post("/api/admin/sessions/end", json={"subject": "nobody-here"}, cookies=login_as("root"))
    assert (r.status_code, r.json()["error"]) == (404, "unknown_subject")
    r = api.post("/api/admin/sessions/end", json=body, cookies=login_as("root"))
    assert (r.status_code, r.json()["ended"]) == (200, 0)  # known, no active session: nothing to end
