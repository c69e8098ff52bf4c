"""An upload is authenticated and authorized before its body is read (against a served app, over a raw socket).

FastAPI parses a route's File/Form parameters before it runs the route's dependencies: an unauthenticated
200 MB upload to POST /api/t/{tenant}/documents was read whole, to temporary files, before its 401 (three at once
held 875 MB). Now the refusal comes while the client has sent only the head and a first piece of the body, and
nothing of it reaches a file.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx
import pytest

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from tests.conftest import start_server, stop_server

MIB = 1024 * 1024
BOUNDARY = b"atrium-upload-boundary"
PATH = "/api/t/sales/documents"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """JSON bodies capped at 64 KB (ATRIUM_MAX_BODY_KB); uploads keep their own limit (20 files of 20 MB). The
    server's temporary files go to a folder of its own, to be watched."""
    tmp = tmp_path_factory.mktemp("upload-auth")
    temp_dir = tmp / "server-tmp"
    temp_dir.mkdir()
    served = start_server(tmp, {"ATRIUM_MAX_BODY_KB": "64", "TMPDIR": str(temp_dir),
                                "ATRIUM_INGEST_WORKER": "false"})
    yield served
    stop_server(served)


def _key(server, scopes: list[str]) -> str:
    engine = make_engine(f"sqlite:///{server.data_dir / 'atrium.db'}")
    try:
        return issue_key(db=Database(engine), tenant="sales", scopes=scopes).token
    finally:
        engine.dispose()


def _open_temp_files(server) -> list[str]:
    """Files in the server's temporary folder that the server process holds open (an unnamed temporary file
    shows as `<folder>/#<inode> (deleted)`) or that are there at all."""
    folder = server.env["TMPDIR"]
    fd_dir = Path(f"/proc/{server.process.pid}/fd")
    held = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(folder):
            held.append(target)
    return held + [str(p) for p in Path(folder).iterdir()]


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """One response read off a connection the server keeps open (its Content-Length says where it ends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        body += chunk
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body)


def _start_upload(server, auth: bytes = b"") -> tuple[socket.socket, int]:
    """Send the head of an 8 MB upload (over the 64 KB JSON limit, within the upload limit) and its first 2 MB;
    the rest is never sent. Returns the socket and the body size the head declared."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)  # the old code waited here for the rest
    part = (b"--%s\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.txt\"\r\n"
            b"Content-Type: text/plain\r\n\r\n" % BOUNDARY)
    declared = 8 * MIB
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: atrium\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                 b"%sContent-Length: %d\r\n\r\n" % (PATH.encode(), BOUNDARY, auth, declared))
    sock.sendall(part + b"a" * (2 * MIB))  # past Starlette's 1 MB in memory: a parser would spool it to a file
    return sock, declared


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(server):
    assert _open_temp_files(server) == []
    sock, _ = _start_upload(server)
    with sock:
        status, headers, body = _read_response(sock)
        assert (status, body["error"]) == (401, "not_authenticated"), body
        assert headers["www-authenticate"].startswith("Bearer")
        assert _open_temp_files(server) == []  # while the connection is still open, the body unfinished
    denied = server.rows("select reason, route from audit_event where kind = 'denied' and route = :route",
                         route=PATH)
    assert {"reason": "not_authenticated", "route": PATH} in denied  # the refusal is audited, as any other
    assert server.rows("select id from kb_document") == []


def test_a_key_without_the_ingest_scope_is_refused_before_its_body_is_read(server):
    key = _key(server, ["retrieval"])
    sock, _ = _start_upload(server, b"Authorization: Bearer %s\r\n" % key.encode())
    with sock:
        status, _, body = _read_response(sock)
        assert (status, body["error"]) == (403, "missing_scope"), body
        assert _open_temp_files(server) == []
    assert server.rows("select id from kb_document") == []


def test_an_authorized_upload_over_the_json_limit_is_read_and_accepted(server):
    """The order changed, not what an upload may be: a key with `ingest` uploads 1.5 MB (24 times the JSON limit),
    and the form's bad parts are still the same 400 and 422."""
    auth = {"Authorization": f"Bearer {_key(server, ['ingest'])}"}
    text = b"Refunds are allowed within 30 days of purchase.\n" * (3 * MIB // 96)
    r = httpx.post(f"{server.url}{PATH}", files=[("files", ("refunds.txt", text, "text/plain"))], headers=auth,
                   timeout=60)
    assert r.status_code == 202, r.text
    assert [d["filename"] for d in r.json()["documents"]] == ["refunds.txt"]
    r = httpx.post(f"{server.url}{PATH}", content=b"--x\r\n[]--x--\r\n", timeout=60,
                   headers={**auth, "Content-Type": "multipart/form-data; boundary=x"})
    assert (r.status_code, r.json()["error"]) == (400, "http_error"), r.text
    r = httpx.post(f"{server.url}{PATH}", data={"files": "not a file"}, headers=auth, timeout=60)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request"), r.text
    assert r.json()["detail"] == "files.0: Value error, Expected UploadFile, received: <class 'str'>"
    assert _open_temp_files(server) == []  # the 1 MB file's temporary file went with its request
