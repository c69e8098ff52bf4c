"""POST /api/t/{tenant}/dify/chat-messages against a local server speaking Dify's chat-messages contract
(blocking JSON; streaming SSE with `message`, `message_end`, `error` events)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.errors import QuotaExceeded

APP_KEYS = {"DIFY_SALES_APP_KEY": "app-sales-secret", "DIFY_FINANCE_APP_KEY": "app-finance-secret"}


class FakeDify:
    """Dify's service API, the parts Atrium uses: POST /v1/chat-messages with `Bearer <app key>`."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_with: tuple[int, dict] | None = None
        self.stream_error = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if self.path != "/v1/chat-messages":
                    return self._json(404, {"code": "not_found", "message": "no such route", "status": 404})
                if self.headers.get("Authorization") not in {f"Bearer {k}" for k in APP_KEYS.values()}:
                    return self._json(401, {"code": "unauthorized", "message": "Invalid API key", "status": 401})
                if owner.fail_with:
                    return self._json(*owner.fail_with)
                conversation = body.get("conversation_id") or str(uuid.uuid4())
                answer = f"Hello {body['user']}, you asked: {body['query']}"
                if body.get("response_mode") == "streaming":
                    return self._stream(owner.sse_events(answer, conversation))
                return self._json(200, {"event": "message", "task_id": "t1", "id": "m1", "message_id": "m1",
                                        "conversation_id": conversation, "mode": "chat", "answer": answer,
                                        "metadata": {"usage": {"total_tokens": 12}}, "created_at": 1700000000})

            def _json(self, status: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, chunks: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sse_events(self, answer: str, conversation: str) -> list[bytes]:
        events = [{"event": "message", "task_id": "t1", "message_id": "m1", "conversation_id": conversation,
                   "answer": word + " ", "created_at": 1700000000} for word in answer.split()]
        if self.stream_error:
            events.append({"event": "error", "task_id": "t1", "message_id": "m1", "status": 400,
                           "code": "provider_quota_exceeded", "message": "quota exceeded"})
        else:
            events.append({"event": "message_end", "task_id": "t1", "message_id": "m1",
                           "conversation_id": conversation, "metadata": {"usage": {"total_tokens": 12}}})
        return [f"data: {json.dumps(e)}\n\n".encode() for e in events]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def dify(monkeypatch):
    server = FakeDify()
    for name, value in APP_KEYS.items():
        monkeypatch.setenv(name, value)
    yield server
    server.close()


@pytest.fixture
def client(make_api_client, dify):
    return make_api_client(DIFY_BASE_URL=dify.url)


URL = "/api/t/sales/dify/chat-messages"


def test_blocking_answer_with_the_authenticated_subject_as_user(client, dify, login_as):
    r = client.post(URL, cookies=login_as("alice"),
                    json={"query": "discount limit?", "inputs": {}, "response_mode": "blocking", "user": "mallory"})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == "Hello alice, you asked: discount limit?"
    (seen,) = dify.requests
    assert seen["auth"] == "Bearer app-sales-secret"
    assert seen["body"]["user"] == "alice" and seen["body"]["query"] == "discount limit?"


def test_streaming_passes_dify_events_through_unchanged(client, dify, login_as):
    with client.stream("POST", URL, cookies=login_as("bob"), json={
        "query": "hi there", "response_mode": "streaming", "conversation_id": "c-42",
        "auto_generate_name": False,
    }) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(r.iter_bytes())
    assert raw == b"".join(dify.sse_events("Hello bob, you asked: hi there", "c-42"))
    events = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert [e["event"] for e in events][-1] == "message_end"
    assert "".join(e["answer"] for e in events if e["event"] == "message").strip() == \
        "Hello bob, you asked: hi there"
    body = dify.requests[0]["body"]
    assert body["conversation_id"] == "c-42" and body["auto_generate_name"] is False and body["user"] == "bob"


def test_stream_error_event_reaches_the_client(client, dify, login_as):
    dify.stream_error = True
    with client.stream("POST", URL, cookies=login_as("alice"), json={"query": "x", "response_mode": "streaming"}) as r:
        raw = b"".join(r.iter_bytes()).decode()
    assert '"event": "error"' in raw and "provider_quota_exceeded" in raw


def test_each_tenant_uses_its_own_dify_app(client, dify, login_as):
    r = client.post("/api/t/finance/dify/chat-messages", cookies=login_as("fiona"), json={"query": "q"})
    assert r.status_code == 200
    assert dify.requests[-1]["auth"] == "Bearer app-finance-secret" and dify.requests[-1]["body"]["user"] == "fiona"


def test_tenant_mismatch_never_reaches_dify(client, dify, login_as):
    erin = login_as("erin")  # engineering
    r = client.post(URL, cookies=erin, json={"query": "leak?"})
    assert (r.status_code, r.json()["error"]) == (403, "tenant_mismatch")
    r = client.post(URL, cookies=login_as("alice"), headers={"X-Tenant-ID": "finance"}, json={"query": "leak?"})
    assert (r.status_code, r.json()["error"]) == (403, "tenant_header_mismatch")
    r = client.post(URL, json={"query": "anonymous?"})
    assert r.status_code == 401
    # a key without the chat scope
    key = client.post("/api/t/sales/keys", cookies=login_as("carol"), json={"scopes": ["retrieval"]}).json()["token"]
    r = client.post(URL, headers={"Authorization": f"Bearer {key}"}, json={"query": "x"})
    assert (r.status_code, r.json()["error"]) == (403, "missing_scope")
    assert dify.requests == []


def test_api_key_user_is_the_key_subject(client, dify, login_as):
    issued = client.post("/api/t/sales/keys", cookies=login_as("carol"), json={"scopes": ["chat"]}).json()
    r = client.post(URL, headers={"Authorization": f"Bearer {issued['token']}"}, json={"query": "q", "user": "x"})
    assert r.status_code == 200
    assert dify.requests[-1]["body"]["user"] == f"key:{issued['id']}"


def test_upstream_refusals_and_failures(client, dify, login_as, monkeypatch):
    dify.fail_with = (400, {"code": "invalid_param", "message": "conversation not exists", "status": 400})
    r = client.post(URL, cookies=login_as("alice"), json={"query": "q", "conversation_id": "nope"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_param"
    dify.fail_with = (500, {"code": "internal", "message": "boom", "status": 500})
    r = client.post(URL, cookies=login_as("alice"), json={"query": "q"})
    assert (r.status_code, r.json()["error"]) == (502, "dify_error")
    monkeypatch.delenv("DIFY_SALES_APP_KEY")
    r = client.post(URL, cookies=login_as("alice"), json={"query": "q"})
    assert (r.status_code, r.json()["error"]) == (503, "dify_not_configured")
    assert "DIFY_SALES_APP_KEY" in r.json()["detail"]
    r = client.post(URL, cookies=login_as("alice"), json={"query": ""})
    assert r.status_code == 422


def test_unreachable_dify_is_a_clear_502(make_api_client, login_as, monkeypatch):
    monkeypatch.setenv("DIFY_SALES_APP_KEY", "k")
    from tests.conftest import free_port

    client = make_api_client(DIFY_BASE_URL=f"http://127.0.0.1:{free_port()}")
    r = client.post(URL, cookies=login_as("alice"), json={"query": "q"})
    assert (r.status_code, r.json()["error"]) == (502, "dify_unreachable")


def test_over_the_tenants_cap_is_a_429_in_difys_shape_and_every_answer_gives_its_slot_back(client, dify, login_as):
    """The tenant's in-process caps (tenants.yaml `limits`) hold for its Dify app too: over them, a 429 before Dify
    is asked; whatever the answer (blocking, streamed, Dify's refusal, Dify failing), the slot comes back."""
    inflight = client.app.state.services.inflight
    alice = login_as("alice")
    held = []
    while True:  # fill sales' model calls (defaults.limits in tenants.yaml) as answers in progress would
        try:
            held.append(inflight.acquire("sales", stream=False))
        except QuotaExceeded:
            break
    r = client.post(URL, cookies=alice, json={"query": "q", "response_mode": "streaming"})
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["error_code"] == 429 and body["limit"] == "model_calls"
    assert "model calls in flight (tenants.yaml limits.model_calls: 8)" in body["error_msg"]
    assert r.headers["Retry-After"] == str(body["retry_after"])
    assert dify.requests == []  # refused before Dify was asked
    for slot in held:
        slot.release()
    with client.stream("POST", URL, cookies=alice, json={"query": "hi", "response_mode": "streaming"}) as r:
        assert r.status_code == 200 and b"message_end" in b"".join(r.iter_bytes())
    assert client.post(URL, cookies=alice, json={"query": "q"}).status_code == 200
    dify.fail_with = (400, {"code": "invalid_param", "message": "conversation not exists", "status": 400})
    assert client.post(URL, cookies=alice, json={"query": "q"}).status_code == 400
    dify.fail_with = (500, {"code": "internal", "message": "boom", "status": 500})
    assert client.post(URL, cookies=alice, json={"query": "q", "response_mode": "streaming"}).status_code == 502
    assert inflight.held("sales") == {"model_calls": 0, "streams": 0}
