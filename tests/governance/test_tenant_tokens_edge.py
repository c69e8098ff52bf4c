"""A department's tokens a day hold exactly when callers set no max_tokens (a served replica, in-process counters and
Redis): each call reserves its prompt plus 512 tokens and is capped at them, so parallel calls at the edge admit
exactly what fits and what they use never passes the quota.

The fault it guards against: a call without max_tokens reserved 512 tokens for its answer but the model could write
its own maximum, so every call admitted at the edge overshot (here a provider that writes 2,000 tokens unless told
fewer: 3 admitted calls used 6,000+ tokens of a quota of ~1,900). The provider holds every answer until all the
requests have been refused or received (all admitted reservations are held at once: which ones fit does not depend
on how fast an answer comes back)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from backend.auth.api_keys import issue_key
from backend.chat.compose import estimate_tokens
from backend.chat.pipeline import RESERVED_OUTPUT
from backend.db.engine import Database, make_engine
from tests.conftest import start_server, stop_server
from tests.llm.fakes import FakeOpenAI, make_config_dir, set_tenant

MESSAGES = [{"role": "user", "content": "Write everything you know about notice periods."}]
EST = estimate_tokens(MESSAGES) + RESERVED_OUTPUT  # what each call without max_tokens reserves
LONG = 2000  # what the model writes when nobody caps it
PROMPT = 11


def _written(body: dict[str, Any]) -> int:
    """LONG tokens, or max_tokens when the request gives it."""
    cap = body.get("max_tokens") or body.get("max_completion_tokens")
    return min(LONG, int(cap)) if cap else LONG


def long_winded(body: dict[str, Any]) -> tuple[str, str]:
    written = _written(body)
    return "word " * written, "length" if written < LONG else "stop"


def long_usage(body: dict[str, Any]) -> dict[str, int]:
    """What the provider says it wrote (what the quota is charged)."""
    written = _written(body)
    return {"prompt_tokens": PROMPT, "completion_tokens": written, "total_tokens": PROMPT + written}


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_parallel_calls_without_max_tokens_admit_exactly_what_fits_the_days_tokens(tmp_path, backend, request):
    fits, sent = 3, 8
    quota = fits * EST + EST // 2  # room for 3 reservations, not 4 (half of one to spare: the edge, not a rounding)
    # OpenAI's chat completions writing LONG tokens, or max_tokens when given (usage says so), each answered once
    # `gate` is set.
    with FakeOpenAI(reply=long_winded, usage=long_usage, gate=threading.Event()) as provider:
        model = {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                          "api_base": provider.url}}
        cfg = make_config_dir(tmp_path, model_list=[model], fallbacks=[], policy={"allowed_tiers": ["fast"]},
                              quotas={"requests_per_minute": None, "user_requests_per_minute": None,
                                      "tokens_per_day": None, "monthly_budget_usd": None})
        set_tenant(cfg, "sales", quotas={"tokens_per_day": quota})  # the department's only: no member budget
        env = {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_INGEST_WORKER": "false"}
        if backend == "redis":
            env |= {"REDIS_URL": request.getfixturevalue("redis_url"),
                    "ATRIUM_REDIS_PREFIX": request.getfixturevalue("redis_prefix")}
        server = start_server(tmp_path / "r", env)
        try:
            db = Database(make_engine(f"sqlite:///{server.data_dir / 'atrium.db'}"))
            # One caller each: no member's or caller's limit is in the way.
            keys = [issue_key(db=db, tenant="sales", scopes=["chat"]) for _ in range(sent)]

            def call(i: int) -> httpx.Response:
                return httpx.post(f"{server.url}/api/t/sales/v1/chat/completions", timeout=120,
                                  headers={"Authorization": f"Bearer {keys[i].token}", "X-Tenant-ID": "sales"},
                                  json={"model": "fast", "messages": MESSAGES})  # no max_tokens

            with ThreadPoolExecutor(sent) as pool:
                futures = [pool.submit(call, i) for i in range(sent)]
                deadline = time.monotonic() + 120  # every request refused or at the provider (not a timing claim)
                while len(provider.requests) + sum(f.done() for f in futures) < sent and time.monotonic() < deadline:
                    time.sleep(0.05)
                provider.gate.set()
                responses = [f.result() for f in futures]
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] * fits + [429] * (sent - fits), [r.text for r in responses if r.status_code != 200]
            caps = [body.get("max_tokens") or body.get("max_completion_tokens") for body in provider.requests]
            assert caps == [RESERVED_OUTPUT] * fits  # each admitted call capped at what it reserved
            answered = [r.json() for r in responses if r.status_code == 200]
            assert all(a["choices"][0]["finish_reason"] == "length" for a in answered)  # the caller is told
            refusal = next(r for r in responses if r.status_code == 429).json()["error"]
            assert refusal["code"] == "tokens_per_day"
            # Overshoot 0: the day's usage is what the admitted answers used, within the quota.
            used = server.rows("select sum(prompt_tokens + completion_tokens) as n from chat_turn "
                               "where tenant = 'sales'")[0]["n"]
            assert used == fits * (PROMPT + RESERVED_OUTPUT) <= quota
        finally:
            stop_server(server)
