"""Per-tenant caps inside one process (governance/inflight.py; tenants.yaml `limits`): the counting itself, then
through the HTTP interface of a started app with a slow OpenAI-compatible provider holding streams open."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import pytest
import yaml

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from backend.errors import QuotaExceeded
from backend.governance.inflight import InflightLimits
from backend.tenants import TenantLimits
from tests.conftest import start_server, stop_server
from tests.llm.fakes import FakeOpenAI, SlowOpenAI, make_config_dir

NO_QUOTAS = {"requests_per_minute": None, "user_requests_per_minute": None, "tokens_per_day": None,
             "monthly_budget_usd": None}


def _caps(**per_tenant: TenantLimits) -> InflightLimits:
    return InflightLimits(limits=lambda t: per_tenant.get(t, TenantLimits(model_calls=None, streams=None)),
                          name_of=lambda t: t.title())


def test_a_tenant_over_its_cap_is_refused_naming_the_limit_and_others_are_not_affected():
    caps = _caps(finance=TenantLimits(model_calls=2, streams=1))
    held = [caps.acquire("finance", stream=False), caps.acquire("finance", stream=False)]
    with pytest.raises(QuotaExceeded) as refused:
        caps.acquire("finance", stream=False)
    assert refused.value.limit == "model_calls" and refused.value.status_code == 429
    assert refused.value.headers["Retry-After"] == str(caps.retry_after_s)
    assert refused.value.message.startswith(
        "Finance already has 2 model calls in flight (tenants.yaml limits.model_calls: 2): try again in a few "
        "seconds, when one has finished")
    assert [caps.acquire("sales", stream=True) for _ in range(20)]  # no cap: never refused
    held[0].release()
    held[0].release()  # idempotent: every exit path may release
    assert caps.held("finance") == {"model_calls": 1, "streams": 0}


def test_a_stream_takes_a_model_call_and_a_stream_and_a_refusal_takes_nothing():
    caps = _caps(finance=TenantLimits(model_calls=3, streams=1))
    stream = caps.acquire("finance", stream=True)
    with pytest.raises(QuotaExceeded) as refused:
        caps.acquire("finance", stream=True)
    assert refused.value.limit == "streams" and "limits.streams: 1" in refused.value.message
    assert caps.held("finance") == {"model_calls": 1, "streams": 1}  # the refused one took no model call
    with caps.acquire("finance", stream=False):  # a call that does not stream still fits
        assert caps.held("finance") == {"model_calls": 2, "streams": 1}
    stream.release()
    assert caps.held("finance") == {"model_calls": 0, "streams": 0}


# -- through a started app ----------------------------------------------------------------------------------------

@pytest.fixture
def make_app(tmp_path):
    """make_app(limits) -> (server, API keys): an app whose `smart` tier streams one word every 50 ms (an answer
    takes a minute: held until its client closes it) and whose `fast` tier always fails; `limits` for every
    tenant (tenants.yaml `defaults.limits`)."""
    started: list[Any] = []

    def make(limits: dict[str, int]) -> tuple[Any, dict[str, str]]:
        slow, broken = SlowOpenAI(words=1200, delay=0.05).__enter__(), FakeOpenAI(fail=True).__enter__()
        started.extend([slow, broken])
        cfg = make_config_dir(tmp_path, model_list=[
            {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                       "api_base": slow.url}},
            {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                      "api_base": broken.url}}],
            fallbacks=[], quotas=NO_QUOTAS, policy={"allowed_tiers": ["smart", "fast"], "default_tier": "smart"})
        data = yaml.safe_load((cfg / "tenants.yaml").read_text())
        data["defaults"]["limits"] = {**data["defaults"]["limits"], **limits}
        (cfg / "tenants.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        server = start_server(tmp_path / "app", {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_INGEST_WORKER": "false",
                                                 "ATRIUM_CONVERSATION_TITLES": "off"})
        started.append(server)
        db = Database(make_engine(f"sqlite:///{server.data_dir / 'atrium.db'}"))
        try:
            keys = {t: issue_key(db=db, tenant=t, scopes=["chat"]).token for t in ("sales", "engineering")}
        finally:
            db.engine.dispose()
        return server, keys

    yield make
    for item in reversed(started):
        if hasattr(item, "process"):
            stop_server(item)
        else:
            item.__exit__(None, None, None)


def _headers(keys: dict[str, str], tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[tenant]}", "X-Tenant-ID": tenant}


def _completion(stream: bool, tier: str = "smart") -> dict[str, Any]:
    return {"model": tier, "stream": stream, "max_tokens": 4000, "messages": [{"role": "user", "content": "a story"}]}


def _hold_stream(stack: contextlib.ExitStack, url: str, headers: dict[str, str]) -> None:
    """Open a streaming completion and read until the answer's first words: it is then in flight, held open until
    the stack closes. (The line iterator is kept: httpx closes the connection when it is dropped early.)"""
    tenant = headers["X-Tenant-ID"]
    r = stack.enter_context(httpx.stream("POST", f"{url}/api/t/{tenant}/v1/chat/completions", json=_completion(True),
                                         headers=headers, timeout=60))
    assert r.status_code == 200, r.read()
    lines = r.iter_lines()
    stack.callback(lines.close)
    for line in lines:
        if '"content": "word' in line:
            return
    raise AssertionError("the stream ended before its first words")


def _poll(check: Any, deadline_s: float = 60) -> Any:
    end = time.monotonic() + deadline_s
    while not (value := check()) and time.monotonic() < end:
        time.sleep(0.2)
    return value


def test_streams_over_the_cap_are_refused_others_are_served_and_slots_come_back(make_app):
    limits = {"model_calls": 3, "streams": 2}
    server, keys = make_app(limits)
    sales, engineering = _headers(keys, "sales"), _headers(keys, "engineering")
    v1 = f"{server.url}/api/t/sales/v1/chat/completions"
    with contextlib.ExitStack() as streams:
        for _ in range(limits["streams"]):
            _hold_stream(streams, server.url, sales)

        refused = httpx.post(v1, json=_completion(True), headers=sales, timeout=60)
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "2"
        error = refused.json()["error"]  # OpenAI's shape on /v1
        assert error["type"] == "rate_limit_error" and error["code"] == "streams"
        assert "already has 2 streaming answers open (tenants.yaml limits.streams: 2)" in error["message"]

        # The chat route and its own shape: the same cap, before any retrieval or model work.
        chat = httpx.post(f"{server.url}/api/t/sales/chat", headers=sales, timeout=60,
                          json={"assistant": "sales-assistant", "message": "hi", "stream": True})
        assert chat.status_code == 429 and chat.json()["limit"] == "streams", chat.text
        assert chat.json()["error"] == "quota_exceeded" and chat.json()["retry_after"] == 2

        # A call that does not stream takes the third model call.
        quick = httpx.post(v1, json=_completion(False), headers=sales, timeout=60)
        assert quick.status_code == 200 and quick.json()["choices"][0]["message"]["content"] == "a quick answer"

        # Another tenant is served meanwhile: as many streams as its own cap allows.
        with contextlib.ExitStack() as others:
            for _ in range(limits["streams"]):
                _hold_stream(others, server.url, engineering)
    # The streams were closed by their client: their slots come back (the server notices at its next write), so
    # the tenant can hold as many streams as its cap again.
    def all_back() -> bool:
        with contextlib.ExitStack() as again:
            for _ in range(limits["streams"]):
                r = again.enter_context(httpx.stream("POST", v1, json=_completion(True), headers=sales, timeout=60))
                if r.status_code != 200:
                    return False
            return True  # leaving closes them: their slots come back too

    assert _poll(all_back), server.log_tail()
    refusals = server.rows("select channel, outcome, error from chat_turn where tenant = 'sales' "
                           "and outcome = 'quota' order by id")
    assert [(r["channel"], r["outcome"]) for r in refusals[:2]] == [("openai", "quota"), ("api", "quota")]
    assert "limits.streams" in refusals[0]["error"]
    assert "unhandled error" not in server.log_path.read_text()


def test_model_calls_over_the_cap_are_refused_and_failed_calls_give_their_slot_back(make_app):
    limits = {"model_calls": 2, "streams": 8}
    server, keys = make_app(limits)
    sales = _headers(keys, "sales")
    v1 = f"{server.url}/api/t/sales/v1/chat/completions"
    # Twice the cap of calls whose model fails, one after the other: each failure gives its slot back.
    for _ in range(2 * limits["model_calls"]):
        failed = httpx.post(v1, json=_completion(False, "fast"), headers=sales, timeout=60)
        assert failed.status_code == 502, failed.text
    with contextlib.ExitStack() as streams:
        for _ in range(limits["model_calls"]):
            _hold_stream(streams, server.url, sales)
        refused = httpx.post(v1, json=_completion(False), headers=sales, timeout=60)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "model_calls"
        assert ("already has 2 model calls in flight (tenants.yaml limits.model_calls: 2): try again in a few "
                "seconds, when one has finished") in refused.json()["error"]["message"]
        other = httpx.post(f"{server.url}/api/t/engineering/v1/chat/completions", json=_completion(False),
                           headers=_headers(keys, "engineering"), timeout=60)
        assert other.status_code == 200, other.text
    assert "unhandled error" not in server.log_path.read_text()
