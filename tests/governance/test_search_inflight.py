"""A tenant's burst of searches (POST /search, Dify's External Knowledge API) is held to its in-process cap.

Each search embeds its query with the embedding model in a worker thread; the process has a handful of those for
everyone (asyncio's default pool: 6 on a 2-core machine). Uncapped, one tenant's 50 concurrent searches held every
thread and every other tenant's request that needs one (verifying a session, listing documents, a chat turn's
retrieval) queued behind them. A search is a model call (its query's embedding): it takes one of the tenant's
`limits.model_calls` slots, and over the cap it is a 429 naming the limit, while other tenants are served.

The embedding provider is a local server speaking OpenAI's /v1/embeddings that holds each request until the test
lets it go, so the searches are in flight for as long as the test needs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from backend.auth.api_keys import issue_key
from tests.llm.fakes import make_config_dir

CAP = 2


class HeldEmbeddings:
    """POST /v1/embeddings, answered only once `release` is set; `waiting` counts the requests being held."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.waiting += 1
                outer.release.wait(60)
                outer.waiting -= 1
                data = [{"object": "embedding", "index": i,
                         "embedding": [b / 255 + 0.01 for b in hashlib.sha256(t.encode()).digest()[:16]]}
                        for i, t in enumerate(body["input"])]
                raw = json.dumps({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 3, "total_tokens": 3}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held():
    server = HeldEmbeddings()
    yield server
    server.close()


@pytest.fixture
def api(make_api_client, held, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBED_TEST_KEY", "sk-test")
    cfg = make_config_dir(tmp_path, model_list=[{"model_name": "fast", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "sk-test", "mock_response": "ok"}}],
        policy={"allowed_tiers": ["fast"], "default_tier": "fast"})
    models = yaml.safe_load((cfg / "models.yaml").read_text())
    models["embedding_list"] = [{"model_name": "embed-test", "litellm_params": {
        "model": "openai/text-embedding-3-small", "api_base": held.url, "api_key": "os.environ/EMBED_TEST_KEY",
        "max_retries": 0}}]
    (cfg / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    tenants = yaml.safe_load((cfg / "tenants.yaml").read_text())
    tenants["defaults"]["limits"] = {**tenants["defaults"].get("limits", {}), "model_calls": CAP}
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(tenants, sort_keys=False))
    return make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_EMBEDDING_MODEL="embed-test",
                           ATRIUM_INGEST_WORKER="false")


def _key(api, tenant: str) -> dict[str, str]:
    token = issue_key(db=api.app.state.services.db, tenant=tenant, scopes=["retrieval", "ingest"]).token
    return {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}


def _until(check, deadline_s: float = 30) -> bool:
    end = time.monotonic() + deadline_s
    while not check() and time.monotonic() < end:
        time.sleep(0.05)
    return bool(check())


def test_a_burst_of_searches_is_held_to_the_tenants_cap_and_others_are_served(api, held):
    sales, engineering = _key(api, "sales"), _key(api, "engineering")
    # A document queued in sales' default knowledge base, so that Dify's route has a knowledge base to search.
    upload = api.post("/api/t/sales/documents", headers=sales, files={"files": ("notes.txt", b"Refunds take a week.")})
    assert upload.status_code in (200, 201, 202), upload.text
    with ThreadPoolExecutor(8) as pool:
        in_flight = [pool.submit(api.post, "/api/t/sales/search", json={"query": f"q{i}"}, headers=sales)
                     for i in range(CAP)]
        assert _until(lambda: held.waiting == CAP), "the searches did not reach the embedding model"

        over = api.post("/api/t/sales/search", json={"query": "one more"}, headers=sales)
        assert over.status_code == 429, over.text
        assert over.json()["limit"] == "model_calls" and over.headers["Retry-After"]
        assert "limits.model_calls: 2" in over.json()["detail"]
        dify = api.post("/api/t/sales/dify/retrieval", headers=sales, json={
            "knowledge_id": "sales/default", "query": "one more", "retrieval_setting": {"top_k": 3}})
        assert dify.status_code == 429, dify.text
        assert dify.json()["error_code"] == 429 and dify.headers["Retry-After"]  # Dify's shape

        # Another tenant's search is not refused (it waits for the same held model, then answers).
        other = pool.submit(api.post, "/api/t/engineering/search", json={"query": "mine"}, headers=engineering)
        assert _until(lambda: held.waiting == CAP + 1)
        held.release.set()
        assert other.result(30).status_code == 200
        assert [f.result(30).status_code for f in in_flight] == [200] * CAP
    # Every search gave its slot back: the tenant can search again.
    assert api.app.state.services.inflight.held("sales") == {"model_calls": 0, "streams": 0}
    assert api.post("/api/t/sales/search", json={"query": "again"}, headers=sales).status_code == 200
