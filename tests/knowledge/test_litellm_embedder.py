"""The LiteLLM embedder against a local server speaking OpenAI's /v1/embeddings (the paid API's wire
protocol): batching, order, unit-length vectors, and a clear error when the provider fails."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.errors import UpstreamError
from backend.knowledge.embed import make_embedder


def _vector(text: str, dim: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 25.5 for b in digest[:dim]]  # deterministic, deliberately not unit length


@pytest.fixture
def openai_server():
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if "fail" in body["input"]:
                reply, status = {"error": {"message": "quota exceeded", "type": "insufficient_quota"}}, 429
            else:
                # answer out of order: the client must sort by index
                data = [{"object": "embedding", "index": i, "embedding": _vector(t)}
                        for i, t in enumerate(body["input"])]
                reply, status = {"object": "list", "data": data[::-1], "model": body["model"],
                                 "usage": {"prompt_tokens": 3, "total_tokens": 3}}, 200
            raw = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", calls
    server.shutdown()


def test_embeddings_through_litellm(openai_server, monkeypatch):
    base, calls = openai_server
    monkeypatch.setenv("EMBED_TEST_KEY", "sk-test")
    embedder = make_embedder("embed-test", embedding_list=[{"model_name": "embed-test", "litellm_params": {
        "model": "openai/text-embedding-3-small", "api_base": base, "api_key": "os.environ/EMBED_TEST_KEY",
        "max_retries": 0}}])
    embedder.batch_size = 2
    texts = ["alpha", "beta", "gamma"]
    vectors = embedder.embed(texts)
    assert len(vectors) == 3 and embedder.dimension == 16
    for text, vector in zip(texts, vectors, strict=True):
        raw = _vector(text)
        norm = math.sqrt(sum(x * x for x in raw))
        assert vector == pytest.approx([x / norm for x in raw])
    assert [c["body"]["input"] for c in calls] == [["alpha", "beta"], ["gamma"]]
    assert all(c["path"] == "/v1/embeddings" and c["auth"] == "Bearer sk-test" for c in calls)
    assert calls[0]["body"]["model"] == "text-embedding-3-small"
    with pytest.raises(UpstreamError) as info:
        embedder.embed(["fail"])
    assert info.value.code == "embedding_failed" and "embed-test" in info.value.message
