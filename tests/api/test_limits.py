"""Bounded work for every input (issue 14, findings 5, 10 and 11, and the security release's red-team review):
request bodies, heads and trailers capped before any parsing or authentication, and heads due within a deadline
(against a served app, over raw sockets), integer parameters bounded, a `response_format` schema bounded before
the model's grammar is built, a prompt diff bounded in work."""

from __future__ import annotations

import json
import socket
import time

import pytest
from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from backend.db.models import ChatTurn
from tests.conftest import session_cookie_for, start_server, stop_server

MIB = 1024 * 1024


# -- a served app, over raw sockets --------------------------------------------------------------------------


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict]:
    """Read one response to its end (the server closes the connection after these refusals)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def _denials(server) -> int:
    """Refusals the served app has audited (a grouped row stands for `count` of them)."""
    return sum(row.get("count", 1) for row in server.rows("select * from audit_event where kind = 'denied'"))


def test_a_declared_body_over_the_limit_is_refused_before_a_byte_is_read(live_server):
    """Finding 11: an unauthenticated 300 MB JSON POST was read whole (RSS +846 MB) before its 401. Now the head
    alone gets the 413: nothing of the body is sent, none is read, nothing is parsed, authenticated or audited."""
    before = _denials(live_server)
    with _connect(live_server.url) as sock:
        sock.sendall(b"POST /api/t/sales/chat HTTP/1.1\r\nHost: atrium\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (300 * MIB))
        status, body = _response(sock)
    assert status == 413 and body["error"] == "body_too_large", body
    assert "4.0 MB" in body["detail"] and "ATRIUM_MAX_BODY_KB" in body["detail"]
    assert _denials(live_server) == before


def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_the_limit(live_server):
    """Without a Content-Length (chunked), the body is counted as it arrives: the 413 comes once the count passes
    4 MiB, while the client is still sending; the rest is never read."""
    before = _denials(live_server)
    with _connect(live_server.url) as sock:
        sock.sendall(b"POST /api/t/sales/v1/chat/completions HTTP/1.1\r\nHost: atrium\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * (64 * 1024)
        for _ in range(64):  # exactly the limit...
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"1\r\nx\r\n")  # ...and one byte more; the body never ends
        status, body = _response(sock)
    assert status == 413 and body["error"]["code"] == "body_too_large", body  # OpenAI's shape on /v1
    assert _denials(live_server) == before


def test_uploads_have_their_own_limits(live_server):
    """Document uploads take up to ATRIUM_MAX_UPLOAD_FILES files of ATRIUM_MAX_UPLOAD_MB (20 x 20 MB), the chat's
    upload one file: over those, a 413 naming the settings; a 5 MB upload is over the JSON limit but not theirs."""
    for path, size, setting in (("/api/t/sales/documents", 500 * MIB, "ATRIUM_MAX_UPLOAD_FILES"),
                                ("/chat/project/file?session_id=x", 25 * MIB, "ATRIUM_MAX_UPLOAD_MB")):
        with _connect(live_server.url) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: atrium\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: %d\r\n\r\n" % (path.encode(), size))
            status, body = _response(sock)
        assert status == 413 and setting in body["detail"], (path, body)
    import httpx

    files = [("files", ("big.txt", b"a" * (5 * MIB), "text/plain"))]
    r = httpx.post(f"{live_server.url}/api/t/sales/documents", files=files, timeout=60)
    assert (r.status_code, r.json()["error"]) == (401, "not_authenticated")  # past the body limit, to the guard


def test_a_request_head_over_the_limit_is_a_431(live_server):
    """Finding 11: uvicorn's httptools put no limit on headers (one 64 MB header held the event loop for 3.9 s,
    every tenant waiting). The request line and headers are capped at 64 KiB (ATRIUM_MAX_HEADER_KB)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: atrium\r\nX-Filler: "
    with _connect(live_server.url) as sock:
        sock.sendall(head + b"a" * (64 * 1024 + 1 - len(head)))  # one byte over, the head not even finished
        status, body = _response(sock)
    assert status == 431 and body["error"] == "headers_too_large" and "ATRIUM_MAX_HEADER_KB" in body["detail"]
    # an ordinary large head (a long cookie) is served, and so is the next request on the same connection
    with _connect(live_server.url) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: atrium\r\nCookie: c=%s\r\n\r\n" % (b"b" * 48_000)
        sock.sendall(request + b"GET /healthz HTTP/1.1\r\nHost: atrium\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2, data[:500]
    # A body sent with its head, in the same packets, is not head: 300 KB of JSON after a short head is read.
    body = json.dumps({"query": "q" * 300_000}).encode()
    with _connect(live_server.url) as sock:
        sock.sendall(b"POST /api/t/sales/search HTTP/1.1\r\nHost: atrium\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        status, answer = _response(sock)
    assert (status, answer["error"]) == (401, "not_authenticated"), answer


def _key_for(server) -> str:
    """A `retrieval` key of tenant sales, issued in the served app's database."""
    engine = make_engine(f"sqlite:///{server.data_dir / 'atrium.db'}")
    try:
        return issue_key(db=Database(engine), tenant="sales", scopes=["retrieval"]).token
    finally:
        engine.dispose()


def _until_closed(sock: socket.socket) -> bytes:
    """What the server sent until it closed the connection (a reset, when it closed with our bytes unread, ends
    it too); a socket timeout here means the server kept the connection open."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _chunked_search(trailers: bytes, *, auth: bytes = b"") -> bytes:
    body = json.dumps({"query": "refunds"}).encode()
    return (b"POST /api/t/sales/search HTTP/1.1\r\nHost: atrium\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n%s\r\n%x\r\n%s\r\n0\r\n%s"
            % (auth, len(body), body, trailers))


def test_a_chunked_bodys_trailers_count_against_the_head_limit(live_server):
    """Red team: `POST /healthz`, chunked, then a trailer field `X-T: ` followed by 64 MB in 64 KB pieces stalled
    the event loop (5.2 s for everyone): the head's cap stopped counting once the headers were complete. Trailers
    count against ATRIUM_MAX_HEADER_KB too: the server ends the connection once they pass it."""
    piece, sent = b"t" * (64 * 1024), 0
    with _connect(live_server.url) as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: atrium\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\nX-T: ")
        try:
            while sent < 64 * MIB:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 16 * MIB, f"the server read {sent} bytes of one trailer field"
        _until_closed(sock)
    # A handler still waiting for the body gets no body, and the client the head's 431.
    with _connect(live_server.url) as sock:
        try:
            sock.sendall(_chunked_search(b"X-T: " + b"t" * (64 * 1024)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = _until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and json.loads(body)["error"] == "headers_too_large", data[:300]
    assert "ATRIUM_MAX_HEADER_KB" in json.loads(body)["detail"]


def test_trailers_are_not_headers(live_server):
    """An `Authorization` trailer, sent after the body, authenticated the request: uvicorn appended trailers to
    the request's headers (a proxy in front checks the headers, not what follows the body). Trailers are counted,
    then dropped; ordinary ones do not stop a request."""
    key = _key_for(live_server).encode()
    with _connect(live_server.url) as sock:
        sock.sendall(_chunked_search(b"Authorization: Bearer %s\r\nX-Tenant-ID: sales\r\n\r\n" % key))
        status, body = _response(sock)
    assert (status, body["error"]) == (401, "not_authenticated"), body
    with _connect(live_server.url) as sock:
        sock.sendall(_chunked_search(b"X-Checksum: 5d41402a\r\n\r\n", auth=b"Authorization: Bearer %s\r\n" % key))
        status, body = _response(sock)
    assert status == 200 and body["query"] == "refunds", body


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory):
    """A served app that waits 2 s for a request's head (ATRIUM_HEADER_TIMEOUT_S)."""
    server = start_server(tmp_path_factory.mktemp("impatient"), {"ATRIUM_HEADER_TIMEOUT_S": "2",
                                                                 "ATRIUM_INGEST_WORKER": "false"})
    yield server
    stop_server(server)


def _trickle(sock: socket.socket, line: bytes, *, every: float, most: int) -> bool:
    """Send `line` every `every` seconds, at most `most` times: whether the server closed the connection."""
    sock.settimeout(every)
    for _ in range(most):
        try:
            sock.sendall(line)
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def test_a_connection_without_a_complete_head_is_closed(impatient_server):
    """Red team (slowloris): a connection that sent nothing stayed open 220 s+, one trickling a header line every
    10 s 180 s+. A request's head must be complete within ATRIUM_HEADER_TIMEOUT_S of the connection's start."""
    with _connect(impatient_server.url) as sock:
        assert _until_closed(sock) == b""  # nothing sent, nothing answered: closed
    with _connect(impatient_server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: atrium\r\n")
        assert _trickle(sock, b"X-Slow: 1\r\n", every=0.5, most=120), "a head trickled for a minute was waited for"


def test_the_deadline_is_for_heads_and_starts_again_after_each_response(impatient_server):
    """A keep-alive connection whose requests arrive in time is served for longer than the deadline, and so is a
    body slower than it (it is the handler's to read); after a response, the next head is due in turn."""
    key = _key_for(impatient_server).encode()
    with _connect(impatient_server.url) as sock:
        body = json.dumps({"query": "refunds"}).encode()
        sock.sendall(b"POST /api/t/sales/search HTTP/1.1\r\nHost: atrium\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n" % key)
        for byte in body[:5]:  # over 3 s, one byte at a time
            time.sleep(0.6)
            sock.sendall(b"1\r\n%c\r\n" % byte)
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - 5, body[5:]))
        for _ in range(2):
            time.sleep(1)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: atrium\r\n\r\n")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: atrium\r\n")  # ...and this head never ends
        data = _until_closed(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 3 and b'"query":"refunds"' in data, data[:1000]


# -- in-process ----------------------------------------------------------------------------------------------


@pytest.fixture
def client(make_api_client, prompts_root, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "limits-tests-" + "z" * 40)
    return make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root))


def _as(user: str) -> dict[str, str]:
    return {"Cookie": f"access_token={session_cookie_for(user)['access_token']}"}


HUGE = 2**63  # one past SQL's largest integer


@pytest.mark.parametrize(("user", "url", "bound"), [
    ("alice", f"/api/t/sales/documents?offset={HUGE}", "1000000"),
    ("carol", f"/api/t/sales/audit?before={HUGE}", "9223372036854775807"),
    ("root", f"/api/admin/audit?before={HUGE}", "9223372036854775807"),
    ("alice", f"/api/t/sales/prompts/sales-assistant/versions/{HUGE}", "1000000"),
    ("alice", f"/api/t/sales/prompts/sales-assistant/diff?from=1&to={HUGE}", "1000000"),
])
def test_integer_parameters_are_bounded(client, user, url, bound):
    """Finding 11: `?offset=9223372036854775808` was a 500 (the database's integer overflowed). Every integer
    parameter has a bound, and passing it is a 422 that names it."""
    r = client.get(url, headers=_as(user))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request" and bound in r.json()["detail"], r.text


def test_integer_fields_of_bodies_are_bounded(client):
    key = issue_key(db=client.app.state.services.db, tenant="sales", scopes=["chat"]).token
    for field, value in (("n", 1000), ("seed", 2**64)):
        r = client.post("/api/t/sales/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "local", "messages": [{"role": "user", "content": "hi"}], field: value})
        error = r.json()["error"]
        assert r.status_code == 400 and error["param"] == field and "less than or equal to" in error["message"], r.text
    r = client.put("/api/t/sales/prompts/sales-assistant/labels/production", headers=_as("carol"),
                   json={"version": HUGE})
    assert r.status_code == 422 and "1000000" in r.json()["detail"], r.text


def test_an_upload_request_holds_at_most_the_files_its_body_limit_is_sized_for(make_api_client, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "limits-tests-" + "z" * 40)
    client = make_api_client(ATRIUM_MAX_UPLOAD_FILES=2)
    files = [("files", (f"note{i}.txt", b"a note", "text/plain")) for i in range(3)]
    r = client.post("/api/t/sales/documents", files=files, headers=_as("carol"))
    assert (r.status_code, r.json()["error"]) == (422, "too_many_files") and "ATRIUM_MAX_UPLOAD_FILES" in r.text
    assert client.get("/api/t/sales/documents", headers=_as("carol")).json()["documents"] == []


def _schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def _nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(("schema", "named"), [
    ({"type": "array", "items": {"type": "string"}, "minItems": 10_000_000}, "limit of 1000"),
    ({"type": "string", "maxLength": 5_000_000}, "limit of 1000"),
    ({"type": "string", "pattern": "^a{100000}$"}, "limit of 1000"),
    ({"type": "object", "properties": {f"p{i}": {"type": "array", "minItems": 900} for i in range(12)}},
     "add up to more than 10,000"),
    ({"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(250)}}, "more than 200 properties"),
    (_nested(20), "deeper than 32 levels"),
    ({"type": "object", "description": "x" * 20_000}, "the limit is 16,384"),
])
def test_response_format_schemas_are_bounded(client, schema, named):
    """Finding 5: a schema with a huge minItems built the local model's grammar for seconds under the process-wide
    lock (every tenant's `local` calls waited) and doubled RSS. Size, depth, properties and counts are bounded: a
    400 in OpenAI's shape naming the bound and where, and no model is called."""
    key = issue_key(db=client.app.state.services.db, tenant="sales", scopes=["chat"]).token
    r = client.post("/api/t/sales/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                    json={"model": "local", "messages": [{"role": "user", "content": "list things"}],
                          "response_format": _schema_format(schema)})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "schema_too_complex" and named in error["message"], error
    assert error["param"].startswith("response_format"), error
    with client.app.state.services.db.session() as session:
        assert list(session.exec(select(ChatTurn))) == []


def test_realistic_schemas_pass():
    from backend.llm.schema_limits import MAX_SCHEMA_COUNT, SchemaTooComplex, check_schema

    check_schema(_schema_format({
        "type": "object", "required": ["items"], "additionalProperties": False,
        "properties": {"items": {"type": "array", "maxItems": 50, "items": {
            "type": "object", "properties": {"name": {"type": "string", "maxLength": 200},
                                             "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}}}}}}))
    with pytest.raises(SchemaTooComplex):
        check_schema({"type": "array", "minItems": MAX_SCHEMA_COUNT + 1})


def test_a_crafted_diff_costs_bounded_work(client):
    """Finding 10: two crafted versions made one GET .../diff cost about 6 s of CPU (difflib's line matching is
    quadratic and worse), open to every member. The matcher's work is now counted against a budget before it is
    done; past it, the changed middle is one replaced block and `line_diff` says so."""
    url = "/api/t/sales/prompts/sales-assistant"
    base = client.get(f"{url}/versions/1", headers=_as("bob")).json()
    for i, body in enumerate(("a\nb\n" * 2500, "b\na\n" * 2500)):
        r = client.post(f"{url}/versions", headers=_as("bob"), json={
            "body": body, "config": base["config"], "message": "crafted", "base_version": 1 + i})
        assert r.status_code == 201, r.text
    r = client.get(f"{url}/diff", params={"from": 2, "to": 3}, headers=_as("alice"))
    assert r.status_code == 200, r.text
    diff = r.json()
    assert diff["line_diff"] == "block" and diff["stats"] == {"added": 5000, "removed": 5000}
    assert diff["unified"].startswith("--- v0002.md\n+++ v0003.md\n@@ -1,5000 +1,5000 @@")
    # An ordinary edit is still matched line by line.
    assert client.get(f"{url}/diff", params={"from": 1, "to": 2}, headers=_as("alice")).json()["line_diff"] == "lines"


@pytest.mark.parametrize("pair", [
    (["a", "b"] * 5000, ["b", "a"] * 5000),
    (["x"] * 10_000, ["x"] * 5000 + ["y"] + ["x"] * 4999),
    (["x", "y"] * 5000, ["y"] * 5000 + ["x"] * 5000),
    ([f"{i % 7}" for i in range(3000)], [f"{i % 5}" for i in range(3000)]),
    ([f"line {i}" for i in range(4000)], [f"line {i}" for i in range(4000) if i % 3]),
])
def test_line_matching_never_passes_its_budget(pair):
    from backend.prompts.diff import WORK_BUDGET, line_opcodes

    a, b = pair
    codes, exact, work = line_opcodes(a, b)
    assert work <= WORK_BUDGET
    rebuilt: list[str] = []
    for op, i1, i2, j1, j2 in codes:  # whatever the route taken, the opcodes turn a into b
        assert op != "equal" or a[i1:i2] == b[j1:j2]
        rebuilt += a[i1:i2] if op == "equal" else b[j1:j2]
    assert rebuilt == b

