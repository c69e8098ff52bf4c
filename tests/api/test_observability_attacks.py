"""Issue 18's observability attacked from outside, from inside one tenant and as a tenant admin (what leaks into logs
and spans: tests/governance/test_observability_attacks.py; /admin's charts: test_admin_chart_attacks.py): /metrics
through path tricks, other methods and tenant credentials, label values a caller picks, request ids that would break
a log line, a background loop keeping a request's ids, a caller's traceparent, the worker's metrics port held open,
and a secret in a start-up error."""

from __future__ import annotations

import io
import json
import socket

import pytest
from opentelemetry import trace
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from backend.api.observe import request_id_of
from backend.auth.api_keys import issue_key
from backend.db.models import AuditEvent
from backend.settings import Settings, describe_invalid
from backend.worker_metrics import worker_metrics
from tests.conftest import session_cookie_for, start_server, stop_server
from tests.governance.test_tracing import spans  # noqa: F401 - the in-memory span exporter fixture

TOKEN = "scrape-" + "att4ck" * 4
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def metered(make_api_client, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "test-secret-" + "x" * 40)
    return make_api_client(ATRIUM_METRICS_TOKEN=TOKEN, ATRIUM_INGEST_WORKER="false")


# -- /metrics: only the scraper's token, whatever the path or method -----------------------------------------------


def test_metrics_stay_closed_through_path_tricks_methods_and_tenant_credentials(metered):
    services = metered.app.state.services
    key = issue_key(db=services.db, tenant="sales", scopes=["chat", "retrieval", "ingest", "admin"]).token
    attempts = [("GET", path, {}) for path in ("/metrics", "/metrics/", "/metrics%2f", "/metrics%2F", "//metrics",
                                               "/METRICS", "/metrics;x", "/metrics?token=" + TOKEN,
                                               "/./metrics", "/chat/../metrics", "/api/../metrics")]
    attempts += [(m, "/metrics", {}) for m in ("HEAD", "OPTIONS", "POST", "PUT", "DELETE", "TRACE")]
    attempts += [("GET", "/metrics", h) for h in (
        {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {key}", "X-Tenant-ID": "sales"},
        {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"X-Metrics-Token": TOKEN}, {"Cookie": f"access_token={TOKEN}"})]
    for method, path, headers in attempts:
        r = metered.request(method, path, headers=headers, follow_redirects=True)
        assert r.status_code != 200 and "atrium_http_requests" not in r.text, (method, path, headers, r.status_code)
    for user in ("carol", "root"):  # a tenant admin's and an operator's browser session do not open it either
        r = metered.get("/metrics", cookies=session_cookie_for(user))
        assert r.status_code == 401 and r.json()["error"] == "bad_metrics_token", user
    assert metered.get("/metrics", headers=BEARER).status_code == 200
    with services.db.session() as s:  # each refusal of /metrics itself is audited
        rows = s.query(AuditEvent).filter(AuditEvent.route == "/metrics", AuditEvent.kind == "denied").all()
    assert rows and all(r.reason == "bad_metrics_token" and r.status == 401 for r in rows)


def raw_get(url: str, target: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A request line sent as written (an HTTP client would normalise `..` and `//` away)."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.decode("latin-1").partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


def test_metrics_and_the_charts_are_not_reached_through_the_chat_mount(tmp_path):
    """The served app, Chainlit mounted at /chat: its routes and catch-all never hand out /metrics or /admin."""
    server = start_server(tmp_path, {"ATRIUM_METRICS_TOKEN": TOKEN})
    try:
        carol = "; ".join(f"{k}={v}" for k, v in server.login("carol").items())
        for target in ("/chat/../metrics", "/chat/%2e%2e/metrics", "/chat/..%2fmetrics", "/chat//metrics",
                       "/chat/metrics", "/chat/admin", "/chat/../admin", "/chat/%2e%2e/admin", "//metrics",
                       "/metrics/..", "/metrics/../metrics", "/%6detrics", "/admin/../metrics",
                       "/chat/project/../../metrics", "/chat/public/../../admin?days=7"):
            for headers in ({}, {"Cookie": carol}):
                status, body = raw_get(server.url, target, headers)
                assert status in (400, 401, 404), (target, headers, status, body[:200])
                assert "atrium_http_requests" not in body and "chart-" not in body
        status, body = raw_get(server.url, "/metrics", BEARER)
        assert status == 200 and "atrium_http_requests_total" in body  # the test can see metrics when they are there
    finally:
        stop_server(server)


@pytest.mark.parametrize(("header", "ok"), [
    (f"Bearer {TOKEN}", True), (f"bearer   {TOKEN}  ", True), (f"BEARER {TOKEN}", True),
    (None, False), ("", False), ("Bearer", False), ("Bearer ", False), (TOKEN, False), (f"Basic {TOKEN}", False),
    (f"Bearer {TOKEN[:-1]}", False), (f"Bearer {TOKEN}0", False), (f"Bearer {TOKEN} {TOKEN}", False),
    (f"Bearer {TOKEN.upper()}", False), (f"Bearer {TOKEN}\u00e9", False), ("Bearer " + "x" * 100_000, False)])
def test_the_scraper_token_check(header, ok):
    """One check for the web pods' /metrics and the worker's port; it compares digests, never the raw strings (no
    timing or length to learn from)."""
    from backend.governance.metrics import scraper_token_ok

    assert scraper_token_ok(header, TOKEN) is ok
    assert scraper_token_ok(header, None) is False and scraper_token_ok(header, "") is False


# -- labels: bounded whatever a caller sends -----------------------------------------------------------------------


def test_label_values_stay_bounded_whatever_the_caller_sends(metered):
    services = metered.app.state.services
    key = issue_key(db=services.db, tenant="sales", scopes=["chat"]).token
    sales = {"Authorization": f"Bearer {key}", "X-Tenant-ID": "sales"}
    marks = [f"zq{i}mark" for i in range(12)]
    for i, mark in enumerate(marks):
        metered.get(f"/api/t/{mark}/v1/models", headers=sales)  # a made-up tenant
        metered.get(f"/api/t/finance/documents/{mark}", headers=sales)  # another tenant's, with an id
        metered.get(f"/{mark}/x?{mark}=1")  # a made-up path
        metered.request(mark.upper(), "/healthz")  # a made-up method
        metered.post("/api/t/sales/v1/chat/completions", headers=sales,  # a made-up model (assistant)
                     json={"model": mark, "messages": [{"role": "user", "content": mark}]})
        metered.get("/healthz", headers={"X-Request-ID": mark, "X-Tenant-ID": mark,
                                         "traceparent": f"00-{i + 1:032x}-{i + 1:016x}-01"})
    r = metered.get("/metrics", headers=BEARER)
    assert r.status_code == 200
    assert not [m for m in marks if m in r.text.lower()]  # no caller's word anywhere in the scrape
    samples = [s for family in text_string_to_metric_families(r.text) for s in family.samples]
    tenants = {s.labels["tenant"] for s in samples if "tenant" in s.labels}
    assert tenants <= {"", "other", "sales", "engineering", "finance"}, tenants
    routes = {s.labels["route"] for s in samples if s.name == "atrium_http_requests_total"}
    assert all(r == "(no route)" or r.startswith("/") and "zq" not in r for r in routes), routes
    assert {"/api/t/{tenant}/documents/{document_id}", "(no route)"} <= routes
    methods = {s.labels["method"] for s in samples if s.name == "atrium_http_requests_total"}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    # The sales key's probes of finance never show as finance's (or sales') traffic: no tenant was verified.
    probes = [s for s in samples if s.name == "atrium_http_requests_total"
              and s.labels["route"] == "/api/t/{tenant}/documents/{document_id}"]
    assert probes and all(s.labels["tenant"] == "" for s in probes), probes
    # Label sets stay few: 12 rounds of made-up values add no series after the first round's.
    series = {(s.name, tuple(sorted(s.labels.items()))) for s in samples}
    assert len([k for k in series if k[0] == "atrium_http_requests_total"]) < 20


# -- request ids and log lines --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [
    "a\nb", "a\r\nSet-Cookie: x=1", 'x","severity":"CRITICAL', "x" * 129, "", " ", "caf\u00e9", "\u202eevil",
    "a b", "a/b", "a\tb", "a\x00b", "{}", "%0a", "../etc", "a;b"])
def test_a_request_id_that_could_break_a_line_is_replaced(sent):
    got = request_id_of(sent)
    assert got != sent and len(got) == 32 and all(c in "0123456789abcdef" for c in got)


@pytest.mark.parametrize("sent", ["turn-1", "A.b_c-9", "x" * 128, "0"])
def test_a_well_formed_request_id_is_kept(sent):
    assert request_id_of(sent) == sent


def test_the_log_line_of_a_request_with_a_hostile_request_id_stays_one_json_object(capsys, make_api_client):
    metered = make_api_client(ATRIUM_INGEST_WORKER="false")  # built under capsys: its log lines are captured
    capsys.readouterr()
    hostile = 'x","severity":"CRITICAL","message":"forged'  # latin-1 only in a header: what ASGI hands over
    r = metered.get("/api/t/sales/v1/models", headers={"X-Request-ID": hostile})
    assert r.status_code == 401
    rid = r.headers["x-request-id"]
    assert rid != hostile and len(rid) == 32
    lines = [ln for ln in capsys.readouterr().out.splitlines() if rid in ln]
    assert lines, "the request's denial is logged with its request id"
    for line in lines:
        entry = json.loads(line)  # one object per line
        assert entry["request_id"] == rid and entry["severity"] != "CRITICAL" and "forged" not in line


def test_a_background_loop_does_not_keep_the_request_ids_of_the_request_that_started_it():
    """The quota holds' renewal loop is started by whichever request first holds a reservation and then renews
    every tenant's: its lines must not carry that first request's request id and trace id (nor hang its spans
    off that request's trace)."""
    import asyncio
    import logging

    from backend.governance.allowances import Level
    from backend.governance.quota_admission import Admission
    from backend.governance.quota_leases import HoldKeeper
    from backend.logs import JsonFormatter, RequestInfo, request_info

    class Failing:
        async def renew(self, holds, lease_s):  # noqa: ANN001, ANN202
            raise ConnectionError("redis away")

    out = io.StringIO()  # its own stream: other tests' handlers on the root logger write elsewhere
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("atrium.quotas")
    logger.addHandler(handler)

    async def first_request() -> HoldKeeper:
        keeper = HoldKeeper(backend=Failing(), lease_s=0.06)  # type: ignore[arg-type]
        request_info.set(RequestInfo(request_id="first-request", trace_id="f" * 32, tenant="sales"))
        adm = Admission(tenant="sales", levels=[Level(key="k", limit=10, amount=1, ttl_s=60, name="n", unit="tokens",
                                                      seed=lambda: 0)])
        keeper.keep(adm, lease_s=0.06)
        return keeper

    async def main() -> None:
        keeper = await asyncio.create_task(first_request())  # the request's own context, as a handler has
        await asyncio.sleep(0.2)  # a few renewals, each failing with a WARNING
        keeper.live.clear()
        await asyncio.sleep(0.1)

    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines() if "quota reservations" in ln]
    assert lines, "the renewal failed and said so"
    assert not [e for e in lines if e.get("request_id") == "first-request" or e.get("trace_id") == "f" * 32], lines


# -- a caller's traceparent -----------------------------------------------------------------------------------------


def test_an_outsiders_traceparent_is_a_link_not_the_parent(spans, make_api_client):  # noqa: F811
    """An outsider's traceparent must not put Atrium's spans in a trace of the caller's choosing (many requests
    piled into one trace, or grafted onto another's), nor decide whether they are recorded (flag 00: unsampled,
    invisible to operators; 01: sampled past the operator's ratio). The request starts its own trace, sampled by
    Atrium's sampler, and links to the caller's span, so the caller's trace still leads to it."""
    api = make_api_client(ATRIUM_INGEST_WORKER="false")
    chosen = "4bf92f3577b34da6a3ce929d0e0e4736"
    for flags in ("00", "01"):
        spans.clear()
        r = api.get("/healthz", headers={"traceparent": f"00-{chosen}-00f067aa0ba902b7-{flags}",
                                         "tracestate": "vendor=" + "x" * 200})
        assert r.status_code == 200
        server = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
        assert len(server) == 1, f"flags {flags}: the request's span was not recorded"
        (span,) = server
        assert format(span.context.trace_id, "032x") != chosen and span.parent is None, flags
        assert [format(link.context.trace_id, "032x") for link in span.links] == [chosen], flags
    spans.clear()
    api.get("/healthz", headers={"traceparent": "00-zz-00f067aa0ba902b7-01"})
    (span,) = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert span.parent is None and not span.links


# -- the worker's metrics port ---------------------------------------------------------------------------------------


def test_the_worker_metrics_port_lets_go_of_a_client_that_sends_nothing(make_settings, monkeypatch):
    """The port is a thread per connection: a client that opens connections and sends nothing (or half a request)
    must not hold a thread each for ever."""
    from backend.container import build_services
    from backend.worker_metrics import _Handler

    assert Settings().worker_metrics_host == "127.0.0.1"  # not reachable from outside the pod unless told
    assert _Handler.timeout is not None and 0 < _Handler.timeout <= 60, _Handler.timeout
    monkeypatch.setattr(_Handler, "timeout", 0.5)
    services = build_services(make_settings(ATRIUM_METRICS_TOKEN=TOKEN, ATRIUM_INGEST_WORKER="false"))
    try:
        with worker_metrics(services, host="127.0.0.1", port=_free_port()) as port:
            with socket.create_connection(("127.0.0.1", port)) as idle:
                idle.sendall(b"GET /metr")
                idle.settimeout(20)
                assert idle.recv(100) == b""  # closed by the server
    finally:
        services.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- start-up errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("ATRIUM_METRICS_TOKEN", "short-Secret9"), ("ATRIUM_METRICS_TOKEN", "Secret9" * 80),
    ("OIDC_CLIENT_SECRET", ["not", "a-Secret9"]), ("CHAINLIT_AUTH_SECRET", ["not", "a-Secret9"]),
    ("PINECONE_API_KEY", ["pc-Secret9"]), ("DATABASE_URL", ["postgresql://atrium:Secret9@db:5432/atrium"])])
def test_a_bad_secret_is_named_in_the_start_up_error_but_not_printed(name, value):
    """`atrium serve` prints this error (its logs): a token refused as too short is most of the next one."""
    with pytest.raises(ValidationError) as caught:
        Settings(**{name: value})
    text = describe_invalid(caught.value)
    assert name in text and "Secret9" not in text, text
