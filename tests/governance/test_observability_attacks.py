"""Issue 18's observability, attacked: what a caller sends must not leak into the logs, span names or span events,
nor make them unbounded; a tracing endpoint the exporter cannot use stops the start-up with one line naming the
fix (not an ERROR per batch and every span lost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from opentelemetry import trace

from backend.auth.api_keys import issue_key
from tests.conftest import REPO, free_port, start_server, stop_server
from tests.governance.test_tracing import spans  # noqa: F401 - the in-memory span exporter fixture
from tests.llm.fakes import FakeOpenAI, make_config_dir


def test_the_access_log_keeps_no_query_value(tmp_path):
    """The IdP's callback carries `code` and `state` in its query; a caller may put a key in one. uvicorn's access
    line names the parameters, never their values."""
    server = start_server(tmp_path)
    try:
        for path in ("/chat/auth/oauth/oidc/callback?code=SECRET-CODE-1&state=STATE-2",
                     "/api/me?api_key=atr_LEAKED_KEY_3", "/healthz?token=SECRET-4&flag"):
            httpx.get(f"{server.url}{path}", timeout=30)
        lines = [json.loads(ln) for ln in server.log_path.read_text().splitlines() if ln.startswith("{")]
    finally:
        stop_server(server)
    text = json.dumps(lines)
    for secret in ("SECRET-CODE-1", "STATE-2", "atr_LEAKED_KEY_3", "SECRET-4"):
        assert secret not in text, secret
    access = [e["message"] for e in lines if e["logger"] == "uvicorn.access"]
    assert any('"GET /chat/auth/oauth/oidc/callback?code=…&state=… HTTP/1.1"' in m for m in access), access
    assert any(m.endswith('"GET /healthz?token=…&flag HTTP/1.1" 200') or "?REDACTED&flag" in m for m in access), access


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env
    return subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port",
                           str(free_port())], cwd=REPO, env=full, capture_output=True, text=True, timeout=120)


def test_an_otlp_endpoint_the_exporter_cannot_use_stops_the_start(tmp_path):
    base = {"ATRIUM_DATA_DIR": str(tmp_path / "data")}
    done = _serve({**base, "OTEL_EXPORTER_OTLP_ENDPOINT": "otel-collector:4318"})  # the scheme forgotten
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: OTEL_EXPORTER_OTLP_ENDPOINT='otel-collector:4318' is not an http(s) URL" in done.stderr
    assert "http://otel-collector:4318" in done.stderr and "Traceback" not in done.stderr
    done = _serve({**base, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317",
                   "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})  # only OTLP/HTTP is exported
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in done.stderr and "http/protobuf" in done.stderr


def test_span_names_and_attributes_stay_bounded_and_keep_no_error_message(spans, make_api_client, tmp_path):  # noqa: F811
    """A made-up method, a long path and a provider error quoting the prompt: the span's name is a template, its
    path is cut, the failed model call says the error's class and nothing of its message."""
    with FakeOpenAI(fail=True, status=400, error="rejected: TOP-SECRET-PROMPT") as upstream:
        cfg = make_config_dir(tmp_path, model_list=[{"model_name": "fast", "litellm_params": {
            "model": "openai/gpt-fake", "api_base": upstream.url, "api_key": "sk-test"}}], fallbacks=[],
            quotas={"requests_per_minute": 1000})
        api = make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false")
        key = issue_key(db=api.app.state.services.db, tenant="sales", scopes=["chat"]).token
        spans.clear()
        api.request("FOOBAR", "/api/t/sales/v1/models")
        api.get("/made-up/" + "x" * 5000)
        r = api.get("/healthz", headers={"X-Request-ID": "forged\n"})
        assert r.headers["x-request-id"] != "forged\n" and len(r.headers["x-request-id"]) == 32
        r = api.post("/api/t/sales/v1/chat/completions", headers={"Authorization": f"Bearer {key}",
                                                                  "X-Tenant-ID": "sales"},
                     json={"model": "fast", "messages": [{"role": "user", "content": "TOP-SECRET-PROMPT"}]})
        assert r.status_code >= 400
    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind == trace.SpanKind.SERVER]
    names = {s.name for s in server}
    assert "_OTHER (no route)" in names and "GET (no route)" in names, names
    assert all(len(s.name) < 80 and "FOOBAR" not in s.name for s in server), names
    assert all(len(s.attributes["url.path"]) <= 256 for s in server)
    assert all(s.attributes["http.request.method"] in ("GET", "POST", "_OTHER") for s in server)
    assert all("\n" not in s.attributes["atrium.request_id"] for s in server)
    (call,) = [s for s in finished if s.name == "chat fast"]
    assert call.status.status_code == trace.StatusCode.ERROR and call.attributes["error.type"]
    dumped = [json.dumps({"a": dict(s.attributes or {}), "e": [dict(e.attributes or {}) for e in s.events],
                          "s": s.status.description}) for s in finished]
    assert not [d for d in dumped if "TOP-SECRET-PROMPT" in d], dumped


def test_a_database_that_fails_costs_the_backlog_gauges_not_the_scrape(make_api_client):
    """The scrape reads the ingestion backlog from SQL: when that query fails, the HTTP, error and process metrics
    an operator needs during the outage are still served."""
    import sqlalchemy as sa

    token = "scrape-" + "t0ken" * 4
    api = make_api_client(ATRIUM_METRICS_TOKEN=token, ATRIUM_INGEST_WORKER="false")
    with api.app.state.services.db.engine.begin() as conn:  # the query's table gone: any SQL failure alike
        conn.execute(sa.text("ALTER TABLE kb_document RENAME TO kb_document_away"))
    assert api.get("/healthz").status_code == 200
    r = api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text[:500]
    assert "atrium_http_requests_total{" in r.text and "process_cpu_seconds_total" in r.text
    assert "atrium_ingestion_queue_depth{" not in r.text
