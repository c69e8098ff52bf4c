"""Attacks on the dispatched chat completion (backend/api/fast_dispatch.py, fast_path.py, deps.py's principal per
cached key): each test fails if the attack works.

- a request the dispatcher serves itself must be answered exactly as the router and FastAPI's handler answer it
  (headers, encodings, paths the router reads its own way), with the same audit;
- a path learnt for one tenant never serves another tenant's URL, also when paths are learnt concurrently;
- the learnt paths stay bounded whatever paths callers send;
- a revocation through the API applies at once to a key whose principal is remembered;
- a failure inside answers a 500 without what failed (no message, no stack);
- over a served app (uvicorn's parser, raw sockets): framing tricks (Content-Length twice, with Transfer-Encoding,
  signed) never reach the dispatched path, and the body limits hold for a learnt path (chunked, Expect).
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from fastapi.testclient import TestClient

from backend.api import fast_dispatch
from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from tests.api.test_openai_fast_path import PATH, VOLATILE_HEADERS, _dispatcher, _never, _send, _strip
from tests.conftest import start_server, stop_server
from tests.llm.fakes import make_config_dir, mock, set_tenant

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def app_and_keys(tmp_path, make_api_client):
    """As tests/api/test_openai_fast_path.py's: tenant sales on the fast tier; chat keys of sales and finance, and
    a sales key without the chat scope."""
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "fast answer")],
                          quotas={"requests_per_minute": 1000, "user_requests_per_minute": 1000,
                                  "tokens_per_day": None, "monthly_budget_usd": None})
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast"]})
    client = make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false", ATRIUM_MAX_BODY_KB="16")
    services = client.app.state.services
    keys = {"sales": issue_key(db=services.db, tenant="sales", scopes=["chat"]).token,
            "finance": issue_key(db=services.db, tenant="finance", scopes=["chat"]).token,
            "no_chat": issue_key(db=services.db, tenant="sales", scopes=["retrieval"]).token}
    return client, keys


def _ok(keys, tenant: str = "sales", key: str = "sales") -> dict[str, str]:  # noqa: ANN001
    return {"authorization": f"Bearer {keys[key]}", "x-tenant-id": tenant}


def _served(monkeypatch, dispatcher) -> list[str]:  # noqa: ANN001
    """Paths the dispatcher answered itself, past the router (not handed on)."""
    served: list[str] = []
    real = dispatcher._serve

    async def serve(routed, scope, receive, send):  # noqa: ANN001, ANN202
        replay = await real(routed, scope, receive, send)
        if replay is None:
            served.append(scope["path"])
        return replay

    monkeypatch.setattr(dispatcher, "_serve", serve)
    return served


def _watch_audit(monkeypatch, client) -> list[tuple]:  # noqa: ANN001
    recorded: list[tuple] = []
    audit = client.app.state.services.audit
    real_record = audit.record

    def record(kind, **fields):  # noqa: ANN001, ANN003, ANN202
        recorded.append((kind, fields.get("reason"), fields.get("status"), fields.get("tenant"), fields.get("route")))
        return real_record(kind, **fields)

    monkeypatch.setattr(audit, "record", record)
    return recorded


# -- answered as the generic way answers ------------------------------------------------------------------------


def _tricks(keys, salt: str) -> dict[str, dict]:  # noqa: ANN001
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": f"hi {salt}"}]})
    js = {**_ok(keys), "content-type": "application/json"}
    return {
        "upper-case content type": dict(headers={**js, "content-type": "APPLICATION/JSON"}, content=body),
        "latin-1 charset": dict(headers={**js, "content-type": "application/json; charset=latin-1"}, content=body),
        "content type twice": dict(headers=[*js.items(), ("content-type", "text/plain")], content=body),
        "authorization twice, other tenant's second": dict(
            headers=[*js.items(), ("authorization", f"Bearer {keys['finance']}")], content=body),
        "authorization twice, other tenant's first": dict(
            headers=[("authorization", f"Bearer {keys['finance']}"), *js.items()], content=body),
        "tenant header twice": dict(headers=[*js.items(), ("x-tenant-id", "sales")], content=body),
        "tenant header in another case": dict(headers={**js, "x-tenant-id": "Sales"}, content=body),
        "bearer in lower case": dict(headers={**js, "authorization": f"bearer {keys['sales']}"}, content=body),
        "expect 100-continue": dict(headers={**js, "expect": "100-continue"}, content=body),
        "UTF-8 BOM": dict(headers=js, content=b"\xef\xbb\xbf" + body.encode()),
        "model twice": dict(headers=js, content=body[:-1] + ', "model": "eng-assistant"}'),
        "NaN": dict(headers=js, content=body[:-1] + ', "temperature": NaN}'),
        "unicode tenant": dict(headers={**js, "x-tenant-id": "sälës".encode()}, path=PATH.replace("sales", "sälës"),
                               content=body),
        "double slash": dict(headers=js, path=PATH.replace("/v1/", "//v1/"), content=body),
        "NUL in the path": dict(headers=js, path=PATH.replace("sales", "sales%00"), content=body),
    }


def test_tricky_requests_to_a_learnt_path_are_answered_as_the_router_answers_them(app_and_keys, monkeypatch):
    client, keys = app_and_keys
    recorded = _watch_audit(monkeypatch, client)
    served = _served(monkeypatch, _dispatcher(client.app))
    dispatched = []
    for name in _tricks(keys, ""):
        _send(client, _tricks(keys, f"{name} first")[name])  # learnt, if the router sends it to the fast path
        answers = []
        for slow in (False, True):
            if slow:
                client.app.dependency_overrides[_never] = _never  # every request the generic way
            recorded.clear()
            served.clear()
            r = _send(client, _tricks(keys, f"{name} {slow}")[name])
            client.app.dependency_overrides.clear()
            if served:
                assert not slow, name
                dispatched.append(name)
            body = r.json() if r.headers.get("content-type") == "application/json" and r.content else r.text
            answers.append((r.status_code, _strip(body), list(recorded),
                            sorted((k, v) for k, v in r.headers.multi_items() if k not in VOLATILE_HEADERS)))
        assert answers[0] == answers[1], name
        if name.startswith("authorization twice"):  # the first credential counts, never the second
            assert answers[0][0] == (200 if name.endswith("second") else 403), (name, answers[0])
    # Those the dispatcher answers itself (the rest it hands on, unread or replayed: compared all the same).
    assert dispatched == ["content type twice", "authorization twice, other tenant's second",
                          "authorization twice, other tenant's first",
                          "tenant header twice", "tenant header in another case", "bearer in lower case",
                          "expect 100-continue", "model twice", "unicode tenant", "NUL in the path"], dispatched


# -- tenants, learning, bounds ---------------------------------------------------------------------------------


def test_paths_learnt_at_once_for_several_tenants_each_keep_their_own_tenant(app_and_keys, monkeypatch):
    client, keys = app_and_keys
    dispatcher = _dispatcher(client.app)
    recorded = _watch_audit(monkeypatch, client)
    sales, finance = PATH, PATH.replace("sales", "finance")
    # (path, tenant header, key) -> the status it must get, learnt or not
    cases = {(sales, "sales", "sales"): 200, (finance, "finance", "sales"): 403,
             (sales, "sales", "finance"): 403, (sales, "sales", "no_chat"): 403}
    statuses: list[tuple] = []

    def call(case: tuple[str, str, str], n: int) -> None:
        path, tenant, key = case
        r = client.post(path, headers=_ok(keys, tenant, key), json={"model": "fast", "messages": [
            {"role": "user", "content": f"hi {n}"}]})
        statuses.append((case, r.status_code))

    threads = [threading.Thread(target=call, args=(case, n)) for n in range(4) for case in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 16 and all(status == cases[case] for case, status in statuses), statuses
    assert set(dispatcher.routed) == {sales, finance}
    for path, routed in dispatcher.routed.items():  # each path's own tenant, whichever request taught it
        assert routed.routing["path_params"] == {"tenant": path.split("/")[3]}
    served = _served(monkeypatch, dispatcher)
    recorded.clear()
    for n, case in enumerate(cases):  # now past the router: the same answers, the same audit
        statuses.clear()
        call(case, 100 + n)
        assert statuses == [(case, cases[case])]
    assert served == [c[0] for c in cases]
    denied = [(reason, tenant) for kind, reason, _, tenant, _ in recorded if kind == "denied"]
    assert denied == [("tenant_mismatch", "finance"), ("tenant_mismatch", "sales"), ("missing_scope", "sales")]


def test_the_learnt_paths_stay_bounded_whatever_paths_are_sent(app_and_keys, monkeypatch):
    client, keys = app_and_keys
    dispatcher = _dispatcher(client.app)
    monkeypatch.setattr(fast_dispatch, "_MAX_PATHS", 4)
    body = {"model": "fast", "messages": USER}
    for n in range(11):  # each an unknown tenant's path the router sends to the fast path: remembered, then dropped
        r = client.post(PATH.replace("sales", f"t{n}"), headers={"x-tenant-id": f"t{n}"}, json=body)
        assert r.status_code == 401 and len(dispatcher.routed) <= 4, (n, r.status_code, len(dispatcher.routed))
    served = _served(monkeypatch, dispatcher)
    for _ in range(2):
        assert client.post(PATH, headers=_ok(keys), json=body).status_code == 200
    assert served == [PATH] and len(dispatcher.routed) <= 4


def test_a_revocation_through_the_api_applies_at_once_to_a_dispatched_key(app_and_keys, monkeypatch):
    client, keys = app_and_keys
    services = client.app.state.services
    admin = issue_key(db=services.db, tenant="sales", scopes=["admin"]).token
    chat = issue_key(db=services.db, tenant="sales", scopes=["chat"])
    headers = {"authorization": f"Bearer {chat.token}", "x-tenant-id": "sales"}
    body = {"model": "fast", "messages": USER}
    dispatcher = _dispatcher(client.app)
    recorded = _watch_audit(monkeypatch, client)
    for _ in range(3):  # learnt, then served from the cached key's remembered principal
        assert client.post(PATH, headers=headers, json=body).status_code == 200
    served = _served(monkeypatch, dispatcher)
    r = client.delete(f"/api/t/sales/keys/{chat.key.id}", headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 200, r.text
    recorded.clear()
    r = client.post(PATH, headers=headers, json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "revoked_api_key"), r.text
    assert served == [PATH]  # refused on the dispatched path itself
    assert [(k, reason, status) for k, reason, status, *_ in recorded] == [("denied", "revoked_api_key", 401)]


def test_a_failure_inside_the_dispatched_path_tells_nothing_of_it(app_and_keys, monkeypatch):
    client, keys = app_and_keys
    quiet = TestClient(client.app, raise_server_exceptions=False)
    body = {"model": "fast", "messages": USER}
    assert quiet.post(PATH, headers=_ok(keys), json=body).status_code == 200  # learnt
    served = _served(monkeypatch, _dispatcher(client.app))

    async def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("SECRET-db-password-in-a-message")

    monkeypatch.setattr(client.app.state.services.chat, "run", broken)
    r = quiet.post(PATH, headers=_ok(keys), json={"model": "fast", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 500, r.text
    assert served == []  # raised past the dispatcher (no handler for it below): ServerErrorMiddleware's 500
    for leak in ("SECRET", "Traceback", "fast_dispatch", ".py"):  # the exception's type only, as the generic way
        assert leak not in r.text, (leak, r.text)


# -- over a served app: uvicorn's parser, raw sockets ------------------------------------------------------------

KIB = 1024
CL_BODY = json.dumps({"model": "local", "messages": USER}).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """JSON bodies capped at 16 KB; a chat key of tenant sales."""
    server = start_server(tmp_path_factory.mktemp("dispatch-attacks"), {"ATRIUM_MAX_BODY_KB": "16",
                                                                        "ATRIUM_INGEST_WORKER": "false"})
    engine = make_engine(f"sqlite:///{server.data_dir / 'atrium.db'}")
    try:
        key = issue_key(db=Database(engine), tenant="sales", scopes=["chat"]).token
    finally:
        engine.dispose()
    yield server, key
    stop_server(server)


def _exchange(server, raw: bytes) -> bytes:  # noqa: ANN001
    """Send `raw`, read until the server closes (every request here says `Connection: close` or is refused)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _head(extra: bytes, key: str | None = None) -> bytes:
    auth = b"Authorization: Bearer %s\r\nX-Tenant-ID: sales\r\n" % key.encode() if key else b""
    return (b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: atrium\r\nContent-Type: application/json\r\n" + auth
            + extra + b"Connection: close\r\n\r\n")


def _denials(server) -> int:  # noqa: ANN001
    return sum(row.get("count", 1) for row in server.rows("select * from audit_event where kind = 'denied'"))


def test_framing_tricks_never_reach_a_learnt_path(served):
    server, key = served
    for _ in range(2):  # learnt (the second one dispatched)
        answer = _exchange(server, _head(b"Content-Length: %d\r\n" % len(CL_BODY)) + CL_BODY)
        assert _status(answer) == 401, answer[:300]
    big = b"x" * (64 * KIB)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    tricks = {
        "length, then chunked": _head(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(CL_BODY), key)
        + chunked,
        "chunked, then length": _head(b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(CL_BODY), key)
        + chunked,
        "two lengths": _head(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(CL_BODY), len(big)), key)
        + CL_BODY + big,
        "negative length": _head(b"Content-Length: -1\r\n", key) + CL_BODY,
        "signed length": _head(b"Content-Length: +%d\r\n" % len(CL_BODY), key) + CL_BODY,
        "identity, then length": _head(b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n" % len(CL_BODY), key)
        + CL_BODY,
    }
    before = _denials(server)
    for name, raw in tricks.items():
        answer = _exchange(server, raw)
        assert _status(answer) == 400 and b"atrium" not in answer.lower(), (name, answer[:300])  # uvicorn's refusal
    assert _denials(server) == before  # none reached the app


def test_the_body_limits_hold_for_a_learnt_path(served):
    server, key = served
    for _ in range(2):
        assert _status(_exchange(server, _head(b"Content-Length: %d\r\n" % len(CL_BODY)) + CL_BODY)) == 401
    before = _denials(server)
    # Declared over the limit, waiting for 100 Continue: refused before a byte is asked for.
    answer = _exchange(server, _head(b"Content-Length: %d\r\nExpect: 100-continue\r\n" % (17 * KIB), key))
    assert _status(answer) == 413 and b"100 Continue" not in answer and b"body_too_large" in answer, answer[:300]
    # No length (chunked): counted as it comes, refused once past the limit, whatever the dispatcher learnt.
    piece = b"x" * KIB
    raw = _head(b"Transfer-Encoding: chunked\r\n", key) + b"".join(b"%x\r\n%s\r\n" % (KIB, piece) for _ in range(17))
    answer = _exchange(server, raw + b"0\r\n\r\n")
    assert _status(answer) == 413 and b"body_too_large" in answer, answer[:300]
    assert _denials(server) == before
