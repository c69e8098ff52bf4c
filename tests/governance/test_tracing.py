"""OpenTelemetry spans of one chat turn, captured by an in-memory exporter: the official openai SDK against an
in-process app (models answered by LiteLLM mock_response). One turn is one trace: the HTTP request,
authentication, retrieval (embedding, search), quota admission, the model call (GenAI semantic conventions) and
the usage write, each with the tenant. The request's log lines carry that trace's id."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backend import tracing
from tests.llm.fakes import make_config_dir, mock, sdk_for, set_tenant

SMART = "anthropic/claude-sonnet-5-5"
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans():
    """A tracer provider exporting to memory, as setup_tracing installs one exporting over OTLP. The global provider
    can be set once per process: the first test to need it sets it; Atrium makes spans only while `_configured`,
    so the tests after this module pay nothing for it."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_atrium_in_memory", False):  # once per process: other modules use this fixture too
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        provider._atrium_in_memory = True
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tracing, "_configured", True)
        yield EXPORTER
    EXPORTER.clear()


def test_tracing_is_off_without_an_otlp_endpoint(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setattr(tracing, "_configured", False)
    assert tracing.setup_tracing() is False


def test_one_chat_turn_is_one_trace_with_its_parts_and_tenant(spans, make_api_client, tmp_path, capsys):
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "fast answer"),
                                                mock("smart", SMART, "smart answer")],
                          quotas={"requests_per_minute": 1000, "tokens_per_day": 1_000_000})
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast", "smart"]})
    api = make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false")
    client = sdk_for(api, "sales")
    spans.clear()
    capsys.readouterr()
    resp = client.chat.completions.with_raw_response.create(
        model="sales-assistant", messages=[{"role": "user", "content": "What discount needs no approval?"}],
        extra_headers={"X-Request-ID": "turn-1"})
    assert resp.headers["x-request-id"] == "turn-1"
    body = resp.parse()
    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind == trace.SpanKind.SERVER]
    assert [s.name for s in server] == ["POST /api/t/{tenant}/v1/chat/completions"]
    root = server[0]
    turn = [s for s in finished if s.context.trace_id == root.context.trace_id]
    names = {s.name for s in turn}
    assert {"atrium.authenticate", "atrium.retrieve", "atrium.embed", "atrium.search", "atrium.quota.admit",
            "chat smart", "atrium.usage.write"} <= names, names
    assert len({s.context.trace_id for s in finished}) == 1  # nothing of the turn went into another trace
    by_name = {s.name: s for s in turn}
    for name in ("atrium.retrieve", "atrium.embed", "atrium.search", "atrium.quota.admit", "chat smart",
                 "atrium.usage.write"):
        assert by_name[name].attributes[tracing.TENANT] == "sales", name
    assert root.attributes[tracing.TENANT] == "sales"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["atrium.request_id"] == "turn-1"
    model = by_name["chat smart"].attributes
    assert model["gen_ai.operation.name"] == "chat" and model["gen_ai.request.model"] == "smart"
    assert model["gen_ai.response.model"] == SMART
    assert model["gen_ai.usage.input_tokens"] == body.usage.prompt_tokens
    assert model["gen_ai.usage.output_tokens"] == body.usage.completion_tokens
    # embedding and search happen inside retrieval; every span hangs off the request's
    assert by_name["atrium.embed"].parent.span_id == by_name["atrium.retrieve"].context.span_id
    assert all(s.parent is not None for s in turn if s is not root)
    # The request's log lines (INFO, stdout) carry its request id and this trace's id.
    trace_id = format(root.context.trace_id, "032x")
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    turn_lines = [e for e in lines if e.get("message") == "chat turn"]
    assert turn_lines and all(e["request_id"] == "turn-1" and e["trace_id"] == trace_id and e["severity"] == "INFO"
                              and e["tenant"] == "sales" for e in turn_lines)


def test_info_goes_to_stdout_and_warnings_to_stderr_with_the_request_id(capsys):
    from backend.logs import RequestInfo, request_info, setup_logging

    setup_logging("INFO")
    token = request_info.set(RequestInfo(request_id="req-7", trace_id="ab" * 16))
    try:
        logging.getLogger("atrium.test").info("an info line", extra={"tenant": "sales"})
        logging.getLogger("atrium.test").warning("a warning line")
    finally:
        request_info.reset(token)
    logging.getLogger("atrium.test").info("outside any request")
    captured = capsys.readouterr()
    out = [json.loads(ln) for ln in captured.out.splitlines() if ln.startswith("{")]
    err = [json.loads(ln) for ln in captured.err.splitlines() if ln.startswith("{")]
    mine = [e for e in out if e["logger"] == "atrium.test"]
    assert mine[0] == {**mine[0], "severity": "INFO", "message": "an info line", "request_id": "req-7",
                       "trace_id": "ab" * 16, "tenant": "sales"}
    assert "request_id" not in mine[1] and mine[1]["message"] == "outside any request"
    assert [e["message"] for e in err if e["logger"] == "atrium.test"] == ["a warning line"]
    assert [e["severity"] for e in err if e["logger"] == "atrium.test"] == ["WARNING"]


def test_litellm_callbacks_are_switched_on_by_configuration(monkeypatch):
    import litellm

    from backend.llm.litellm_quiet import use_callbacks
    from backend.settings import Settings

    monkeypatch.setattr(litellm, "success_callback", [])
    monkeypatch.setattr(litellm, "failure_callback", [])
    names = Settings(ATRIUM_LITELLM_CALLBACKS=" langfuse, ,otel").litellm_callback_list
    assert names == ["langfuse", "otel"]
    use_callbacks(names)
    use_callbacks(names)  # a second app in the same process adds nothing twice
    assert litellm.success_callback == ["langfuse", "otel"] and litellm.failure_callback == ["langfuse", "otel"]


def test_an_ingestion_job_is_a_span_with_its_tenant(spans, make_api_client):
    from backend.knowledge.service import UploadFile
    from tests.knowledge.conftest import admin_of

    api = make_api_client(ATRIUM_INGEST_WORKER="false")
    knowledge = api.app.state.services.knowledge
    up = knowledge.upload(admin_of("finance"), "finance",
                          [UploadFile("close.md", b"# Close\n\nBooks close on day 3.\n")])
    spans.clear()
    assert knowledge.worker.run_once() is not None
    (job,) = [s for s in spans.get_finished_spans() if s.name == "atrium.ingest.job"]
    assert job.attributes[tracing.TENANT] == "finance"
    assert job.attributes["atrium.document_id"] == up["documents"][0]["id"]
