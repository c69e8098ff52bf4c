"""Browser sessions end (issue 14, finding 2): a session lasts ATRIUM_SESSION_HOURS from its sign-in however often
its token is re-issued, and signing out ends it on the server: a copy of the token taken before is refused by the
API, by Chainlit's routes and by its socket, on every replica."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
import socketio
from chainlit.auth.jwt import create_jwt
from chainlit.user import User

from tests.chainlit_client import ChainlitSession
from tests.conftest import DEMO_PASSWORD, session_token, start_server, stop_server

SECRET = "session-lifetime-" + "s" * 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("session-lifetime"), {"CHAINLIT_AUTH_SECRET": SECRET})
    yield srv
    stop_server(srv)


@pytest.fixture
def secret(monkeypatch) -> str:
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)  # create_jwt in this process signs like the server
    return SECRET


def sign_in(server, user: str) -> dict[str, str]:
    r = httpx.post(f"{server.url}/chat/login", data={"username": user, "password": DEMO_PASSWORD},
                   headers={"Origin": server.url}, timeout=30)
    r.raise_for_status()
    return {"access_token": r.cookies["access_token"]}


def reissue(token: str) -> str:
    """What any re-issue produces (Chainlit's POST /chat/auth/jwt did this for any valid token): the same user and
    metadata, a fresh iat and exp."""
    payload = jwt.decode(token, SECRET, algorithms=["HS256"])
    return create_jwt(User(**{k: v for k, v in payload.items() if k not in ("iat", "exp")}))


def cookie(token: str) -> dict[str, str]:
    return {"access_token": token}


def me(server, cookies: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server.url}/api/me", cookies=cookies, timeout=30)


def chat_user(server, cookies: dict[str, str]) -> int:
    return httpx.get(f"{server.url}/chat/user", cookies=cookies, timeout=30).status_code


async def socket_connects(server, cookies: dict[str, str]) -> bool:
    try:
        async with ChainlitSession(server.url, cookies):
            return True
    except socketio.exceptions.ConnectionError:
        return False


async def test_a_session_reissued_many_times_still_ends_at_its_maximum_age(server, secret):
    token = sign_in(server, "alice")["access_token"]
    again = token
    for _ in range(5):  # re-issued within its lifetime: the same session, still good
        again = reissue(again)
    assert me(server, cookie(again)).status_code == 200 and chat_user(server, cookie(again)) == 200

    # The same session had it signed in 13 hours ago (ATRIUM_SESSION_HOURS is 12), re-issued every few hours since:
    # every re-issue has a fresh iat and a fresh 15-day exp, and none of them is a session any more.
    payload = jwt.decode(token, SECRET, algorithms=["HS256"])
    payload["metadata"]["signed_in_at"] = time.time() - 13 * 3600
    aged = jwt.encode(payload, SECRET, algorithm="HS256")
    for _ in range(4):
        aged = reissue(aged)
        r = me(server, cookie(aged))
        assert (r.status_code, r.json()["error"]) == (401, "session_expired"), r.text
        assert chat_user(server, cookie(aged)) == 401
    assert not await socket_connects(server, cookie(aged))
    assert await socket_connects(server, cookie(again)), "the session within its lifetime still connects"


async def test_a_token_used_after_sign_out_is_refused_everywhere(server, secret):
    copied = sign_in(server, "bob")  # e.g. copied off a shared computer before bob signs out
    assert me(server, copied).status_code == 200 and chat_user(server, copied) == 200
    assert await socket_connects(server, copied)

    r = httpx.post(f"{server.url}/chat/logout", cookies=copied, headers={"Origin": server.url}, json={}, timeout=30)
    assert r.status_code == 200 and 'access_token=""' in r.headers.get("set-cookie", "")

    r = me(server, copied)
    assert (r.status_code, r.json()["error"]) == (401, "session_signed_out")
    assert "sign in again" in r.json()["detail"]
    assert chat_user(server, copied) == 401
    assert not await socket_connects(server, copied)
    reissued = cookie(reissue(copied["access_token"]))  # a re-signed copy is the same signed-out session
    assert me(server, reissued).status_code == 401 and chat_user(server, reissued) == 401

    assert [r["subject"] for r in server.rows("select subject from audit_event where kind = 'logout'")] == ["bob"]
    denied = server.rows("select subject, route from audit_event where kind = 'denied' and "
                         "reason = 'session_signed_out'")
    assert {"subject": "bob", "route": "/api/me"} in denied
    assert me(server, sign_in(server, "bob")).status_code == 200, "signing in again works"


def test_a_token_from_before_session_tracking_is_refused(make_api_client, monkeypatch):
    """Tokens signed before sessions had a sid and a sign-in time cannot be ended, so they are not sessions: their
    users sign in again once."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)
    api = make_api_client()
    claims = {"sub": "alice", "preferred_username": "alice", "groups": ["sales"]}
    old = create_jwt(User(identifier="alice", metadata={"claims": claims, "provider": "password"}))
    r = api.get("/api/me", cookies=cookie(old))
    assert (r.status_code, r.json()["error"]) == (401, "session_outdated")
    assert api.get("/api/me", cookies=cookie(session_token("alice", claims))).status_code == 200


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres_url")


def test_replicas_share_sign_outs_and_ended_sessions(database_url, make_settings, monkeypatch):
    """Two replicas (two engines on one database): what one revokes, the other refuses on the next request (no
    process cache in between)."""
    from backend.container import build_services

    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)
    a, b = (build_services(make_settings(DATABASE_URL=database_url)) for _ in range(2))
    try:
        claims = {"sub": "alice", "groups": ["sales"]}

        def signed_in(replica) -> str:
            marks = replica.sessions.start(subject="alice", provider="password")
            return session_token("alice", claims, sid=marks["sid"], signed_in_at=marks["signed_in_at"])

        laptop, phone = signed_in(a), signed_in(b)
        assert b.sessions.verify(laptop).payload is not None and a.sessions.verify(phone).payload is not None
        assert a.sessions.sign_out(laptop) == "alice"
        assert b.sessions.verify(laptop).reason == "session_signed_out"
        assert a.sessions.verify(phone).payload is not None, "signing out ends that session only"

        a.conversations.remember_user(identifier="alice", display_name="Alice", provider="password", claims=claims)
        assert b.sessions.end(subject="alice", by="root").ended == 1  # the phone; the laptop was signed out
        assert a.sessions.verify(phone).reason == "session_ended"
        # Never logged (a sid without a row) and signed in before the end: the subject's cutoff refuses it too.
        unlogged = session_token("alice", claims, signed_in_at=time.time() - 60)
        assert a.sessions.verify(unlogged).reason == "session_ended"
        assert b.sessions.verify(signed_in(a)).payload is not None, "a sign-in after the end is a session"
    finally:
        a.close()
        b.close()


def test_rows_past_the_maximum_age_are_purged_a_batch_at_a_time(services, monkeypatch):
    from backend.auth.sessions import PURGE_BATCH, PURGE_GRACE_S
    from backend.db.models import BrowserSession, BrowserSessionCutoff

    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)
    long_ago = time.time() - services.sessions.max_age_s - PURGE_GRACE_S - 60
    with services.db.session() as session:
        session.add_all([BrowserSession(sid=f"old-{i}", subject="gone", signed_in_at=long_ago, revoked_at=long_ago,
                                        revoked_reason="logout") for i in range(PURGE_BATCH + 5)])
        session.add(BrowserSessionCutoff(subject="gone", ended_at=long_ago))
        session.commit()
    marks = services.sessions.start(subject="alice", provider="password")

    with services.db.session() as session:
        left = {r.sid for r in session.query(BrowserSession).all()}
        cutoffs = session.query(BrowserSessionCutoff).count()
    assert len(left) == 5 + 1 and marks["sid"] in left, "one sign-in deletes at most a batch: bounded work"
    assert cutoffs == 0
    services.sessions.start(subject="alice", provider="password")
    with services.db.session() as session:
        assert not [r for r in session.query(BrowserSession).all() if r.sid.startswith("old-")]


async def test_chainlits_own_token_check_refuses_what_the_api_refuses(services, monkeypatch):
    """Behind the surface guard, Chainlit's own verification (every route's user and the socket's connect go
    through chainlit.auth.authenticate_user) applies the same rules, so no path into the chat skips them."""
    import chainlit.auth as chainlit_auth
    from fastapi import HTTPException

    from backend.db.models import AuditEvent
    from ui.session_tokens import install

    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", SECRET)
    for name in ("decode_jwt", "authenticate_user"):  # process-wide: put back after this test
        monkeypatch.setattr(chainlit_auth, name, getattr(chainlit_auth, name))
    install(services)
    claims = {"sub": "alice", "groups": ["sales"]}
    marks = services.sessions.start(subject="alice", provider="password")
    token = session_token("alice", claims, sid=marks["sid"], signed_in_at=marks["signed_in_at"])
    assert (await chainlit_auth.authenticate_user(token)).identifier == "alice"
    assert chainlit_auth.decode_jwt(token).metadata["claims"] == claims

    services.sessions.sign_out(token)
    for refused in (token, create_jwt(User(identifier="alice", metadata={"claims": claims}))):
        with pytest.raises(HTTPException) as exc:
            await chainlit_auth.authenticate_user(refused)
        assert exc.value.status_code == 401 and "sign in again" in exc.value.detail
        with pytest.raises(jwt.InvalidTokenError):
            chainlit_auth.decode_jwt(refused)
    with services.db.session() as session:
        reasons = [e.reason for e in session.query(AuditEvent).filter(AuditEvent.kind == "denied")]
    assert reasons == ["session_signed_out", "session_outdated"]
