"""Two served replicas sharing Redis (REDIS_URL): one tenant's rate limit holds across both, exactly;
the response cache is shared between the replicas."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from tests.conftest import replica_env, served_replicas
from tests.llm.fakes import make_config_dir, mock, set_tenant


def test_rate_limit_and_cache_across_two_replicas(tmp_path, redis_url, redis_prefix):
    cfg = make_config_dir(tmp_path, model_list=[mock("smart", "anthropic/claude-sonnet-5-5", "shared answer")],
                          quotas={"requests_per_minute": 1000, "user_requests_per_minute": 1000,
                                  "tokens_per_day": None, "monthly_budget_usd": None})
    set_tenant(cfg, "finance", quotas={"requests_per_minute": 4})
    db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = replica_env(config_dir=cfg, database_url=db_url, redis_url=redis_url, redis_prefix=redis_prefix)
    with served_replicas(tmp_path, env) as servers:
        db = Database(make_engine(db_url))
        keys = {t: issue_key(db=db, tenant=t, scopes=["chat", "retrieval"]).token for t in ("finance", "sales")}

        def call(i: int, tenant: str = "finance", question: str | None = None) -> httpx.Response:
            server = servers[i % 2]
            return httpx.post(f"{server.url}/api/t/{tenant}/v1/chat/completions", timeout=60,
                              headers={"Authorization": f"Bearer {keys[tenant]}", "X-Tenant-ID": tenant},
                              json={"model": f"{tenant}-assistant" if tenant == "finance" else "sales-assistant",
                                    "messages": [{"role": "user", "content": question or f"question {i}"}]})

        with ThreadPoolExecutor(10) as pool:
            statuses = sorted(r.status_code for r in pool.map(call, range(10)))
        assert statuses == [200] * 4 + [429] * 6

        first = call(0, "sales", "What is the refund policy?")
        again = call(1, "sales", "what is the refund policy")  # the other replica
        assert first.json()["atrium"]["cached"] is False
        assert again.json()["atrium"]["cached"] is True
