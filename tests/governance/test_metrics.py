"""GET /metrics after real traffic on a served app: chat turns through the OpenAI-compatible route (the official
`openai` SDK, models answered by LiteLLM mock_response), a quota refusal, a cross-tenant probe and an upload;
the scrape parsed with Prometheus' own parser. Counters move by the right amounts under the right tenant, and
one tenant's traffic never shows under another's label. Only the scraper's token opens /metrics."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from tests.conftest import start_server, stop_server
from tests.llm.fakes import make_config_dir, mock, set_tenant

TOKEN = "scrape-" + "s3cret" * 4
SMART_TEXT = "Growth deals up to 15% need no approval."
FAST_TEXT = "Hello from the fast tier."
SMART = "anthropic/claude-sonnet-5-5"
CHAT_ROUTE = "/api/t/{tenant}/v1/chat/completions"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-haiku-5-5", FAST_TEXT),
                                           mock("smart", SMART, SMART_TEXT)],
                          quotas={"requests_per_minute": 1000, "user_requests_per_minute": 1000,
                                  "tokens_per_day": None, "monthly_budget_usd": 1000})
    set_tenant(cfg, "finance", quotas={"requests_per_minute": 2})
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast", "smart"]})
    server = start_server(tmp, {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_METRICS_TOKEN": TOKEN,
                                "ATRIUM_RESPONSE_CACHE": "true"})
    db = Database(make_engine(f"sqlite:///{server.data_dir / 'atrium.db'}"))
    server.keys = {t: issue_key(db=db, tenant=t, scopes=["chat", "retrieval", "ingest"]).token
                   for t in ("sales", "finance", "engineering")}
    yield server
    db.engine.dispose()
    stop_server(server)


def _client(served, tenant: str) -> OpenAI:
    return OpenAI(base_url=f"{served.url}/api/t/{tenant}/v1", api_key=served.keys[tenant],
                  default_headers={"X-Tenant-ID": tenant}, max_retries=0)


def scrape(served) -> dict[str, list]:
    """Sample name -> its samples (name, labels, value)."""
    r = httpx.get(f"{served.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def total(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def tenants_of(samples: dict[str, list], name: str) -> set[str]:
    return {s.labels["tenant"] for s in samples.get(name, []) if s.value}


@pytest.fixture(scope="module")
def traffic(served):
    """The traffic, once; what each tenant was told it used."""
    used = {"sales": [0, 0.0], "engineering": [0, 0.0], "finance": [0, 0.0]}

    def ask(tenant: str, model: str, question: str, *, stream: bool = False) -> None:
        client = _client(served, tenant)
        messages = [{"role": "user", "content": question}]
        if stream:
            chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True,
                                                         stream_options={"include_usage": True}))
            usage = chunks[-1].usage
            used[tenant][0] += usage.prompt_tokens + usage.completion_tokens
            return
        resp = client.chat.completions.create(model=model, messages=messages)
        used[tenant][0] += resp.usage.prompt_tokens + resp.usage.completion_tokens
        used[tenant][1] += resp.model_extra["atrium"]["cost_usd"]

    for i, question in enumerate(["What discount needs no approval?", "Who signs a growth deal?",
                                  "How long is a quote valid?"]):
        ask("sales", "sales-assistant", f"{question} ({i})")
    ask("sales", "sales-assistant", "Tell me about renewals, streaming please", stream=True)
    ask("engineering", "fast", "Say hello to the on-call engineer")
    ask("finance", "fast", "first question for finance")
    ask("finance", "fast", "second question for finance")
    with pytest.raises(openai.RateLimitError):  # requests_per_minute: 2
        ask("finance", "fast", "third question for finance")
    # A sales key asking for finance's models: refused and audited (a denial under the tenant it was aimed at).
    probe = httpx.get(f"{served.url}/api/t/finance/v1/models", timeout=30,
                      headers={"Authorization": f"Bearer {served.keys['sales']}", "X-Tenant-ID": "finance"})
    assert probe.status_code == 403
    up = httpx.post(f"{served.url}/api/t/sales/documents", timeout=60,
                    headers={"Authorization": f"Bearer {served.keys['sales']}", "X-Tenant-ID": "sales"},
                    files={"files": ("renewals.md", b"# Renewals\n\nRenewals are quoted at list price minus 5%.\n")})
    assert up.status_code == 202, up.text
    doc = up.json()["documents"][0]["id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        got = httpx.get(f"{served.url}/api/t/sales/documents/{doc}", timeout=30,
                        headers={"Authorization": f"Bearer {served.keys['sales']}", "X-Tenant-ID": "sales"})
        if got.json()["status"] in ("ready", "failed"):
            break
        time.sleep(0.5)
    assert got.json()["status"] == "ready", got.json()
    return used


def test_chat_turns_tokens_and_cost_are_counted_under_their_tenant(served, traffic):
    m = scrape(served)
    assert total(m, "atrium_chat_turns_total", tenant="sales", assistant="sales-assistant", channel="openai",
                 model=SMART, outcome="ok") == 4
    assert total(m, "atrium_chat_turns_total", tenant="engineering", outcome="ok") == 1
    assert total(m, "atrium_chat_turns_total", tenant="finance", outcome="ok") == 2
    for tenant, (tokens, cost) in traffic.items():
        assert total(m, "atrium_llm_tokens_total", tenant=tenant) == tokens, tenant
        if cost:
            assert total(m, "atrium_llm_cost_usd_total", tenant=tenant) >= cost > 0
    assert total(m, "atrium_http_requests_total", route=CHAT_ROUTE, method="POST", status="200", tenant="sales") == 4
    assert total(m, "atrium_http_requests_total", route=CHAT_ROUTE, status="200", tenant="engineering") == 1
    assert total(m, "atrium_chat_turn_duration_seconds_count", tenant="sales") == 4
    assert total(m, "atrium_chat_time_to_first_token_seconds_count", tenant="sales") == 4
    assert total(m, "atrium_retrieval_duration_seconds_count", tenant="sales") >= 4
    assert total(m, "atrium_cache_requests_total", tenant="sales", result="miss") >= 3
    # Read when scraped, for every served tenant with a budget: sales has spent something of its 1000 USD.
    budget = {s.labels["tenant"]: s.value for s in m["atrium_quota_used_ratio"]
              if s.labels["limit"] == "monthly_budget_usd"}
    assert {"sales", "engineering"} <= set(budget) and 0 < budget["sales"] <= 0.01
    assert total(m, "process_cpu_seconds_total") > 0  # the process's own metrics


def test_one_tenants_traffic_never_appears_under_another_tenants_label(served, traffic):
    m = scrape(served)
    assert tenants_of(m, "atrium_chat_turns_total") == {"sales", "engineering", "finance"}
    # engineering made one turn on the fast tier: nothing of sales' (smart, four turns) is counted as its.
    assert {s.labels["model"] for s in m["atrium_chat_turns_total"] if s.labels["tenant"] == "engineering"} == \
        {"anthropic/claude-haiku-5-5"}
    assert total(m, "atrium_http_requests_total", tenant="engineering") == 1
    assert total(m, "atrium_quota_refusals_total", tenant="sales") == 0
    assert total(m, "atrium_ingestion_jobs_total", tenant="engineering") == 0
    # The probe was refused before any tenant was verified: its request counts under no tenant at all.
    assert total(m, "atrium_http_requests_total", route="/api/t/{tenant}/v1/models", status="403", tenant="") == 1
    assert total(m, "atrium_http_requests_total", route="/api/t/{tenant}/v1/models", tenant="finance") == 0
    labels = {k for samples in m.values() for s in samples for k in s.labels}
    assert not labels & {"subject", "user", "user_id", "key", "message", "question"}


def test_a_quota_refusal_and_a_denial_are_counted_by_limit_and_reason(served, traffic):
    m = scrape(served)
    assert total(m, "atrium_quota_refusals_total", tenant="finance", limit="requests_per_minute") == 1
    assert total(m, "atrium_chat_turns_total", tenant="finance", outcome="quota") == 1
    assert total(m, "atrium_http_requests_total", route=CHAT_ROUTE, status="429", tenant="finance") == 1
    denials = [s for s in m["atrium_access_denials_total"] if s.value and s.labels["tenant"]]
    assert {s.labels["tenant"] for s in denials} == {"finance"}, denials
    assert total(m, "atrium_access_denials_total", tenant="finance") == 1


def test_the_upload_is_counted_as_one_ingestion_job_and_the_queue_is_empty_again(served, traffic):
    m = scrape(served)
    assert total(m, "atrium_http_requests_total", route="/api/t/{tenant}/documents", method="POST", status="202",
                 tenant="sales") == 1
    assert total(m, "atrium_ingestion_jobs_total", tenant="sales", outcome="ready") == 1
    assert total(m, "atrium_ingestion_chunks_total", tenant="sales") >= 1
    assert total(m, "atrium_ingestion_job_duration_seconds_count", tenant="sales") == 1
    depth = {s.labels["tenant"]: s.value for s in m["atrium_ingestion_queue_depth"]}
    assert depth == {"sales": 0, "engineering": 0, "finance": 0}
    assert all(s.value == 0 for s in m["atrium_ingestion_oldest_job_age_seconds"])


def test_only_the_scrapers_token_opens_metrics(served, traffic):
    url = f"{served.url}/metrics"
    cookies = served.login("alice")  # a person (sales); no role opens it
    for attempt in ({}, {"headers": {"Authorization": f"Bearer {served.keys['sales']}"}},
                    {"headers": {"Authorization": "Bearer wrong-token-of-the-right-length"}},
                    {"headers": {"Authorization": TOKEN}}, {"cookies": cookies}):
        r = httpx.get(url, timeout=30, **attempt)
        assert r.status_code == 401, (attempt, r.text)
        assert r.json()["error"] == "bad_metrics_token"
        assert "atrium_" not in r.text
    rows = served.rows("SELECT reason, status, count FROM audit_event WHERE route = '/metrics'")
    assert rows and all(r["reason"] == "bad_metrics_token" and r["status"] == 401 for r in rows)
    assert sum(r["count"] for r in rows) == 5


def test_no_token_configured_no_metrics(make_api_client):
    api = make_api_client()
    r = api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert not api.app.state.services.metrics.enabled  # nothing is collected either
