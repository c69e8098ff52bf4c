"""Two served replicas sharing Redis (REDIS_URL) and the database: parallel requests at the edge of one member's
allowance admit exactly what fits over both; another member is served meanwhile; a tenant admin's raise on one
replica applies on the other's next call.

The provider holds every answer until all the requests have been either refused or received by it: the admitted
ones are then all in progress at once (their reservations held), so which ones fit does not depend on how fast an
answer comes back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from backend.auth.api_keys import issue_key
from backend.chat.compose import estimate_tokens
from backend.db.engine import Database, make_engine
from tests.conftest import replica_env, served_replicas
from tests.llm.fakes import FakeOpenAI, make_config_dir, set_tenant

MESSAGES = [{"role": "user", "content": "How long is the notice period?"}]
MAX_TOKENS = 100
EST = estimate_tokens(MESSAGES) + MAX_TOKENS  # what each request reserves


def test_a_members_allowance_holds_exactly_across_two_replicas(tmp_path, redis_url, redis_prefix):
    fits, sent = 3, 10
    with FakeOpenAI(gate=threading.Event()) as provider:  # 18 tokens of usage an answer
        model = {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                          "api_base": provider.url}}
        cfg = make_config_dir(tmp_path, model_list=[model], fallbacks=[], policy={"allowed_tiers": ["fast"]},
                              quotas={"requests_per_minute": None, "user_requests_per_minute": None,
                                      "tokens_per_day": None, "monthly_budget_usd": None})
        # Room for 3 reservations, not 4 (half of one to spare: the edge, not a rounding).
        set_tenant(cfg, "sales", quotas={"member": {"tokens_per_day": fits * EST + EST // 2}})
        db_url = f"sqlite:///{tmp_path / 'shared.db'}"
        env = replica_env(config_dir=cfg, database_url=db_url, redis_url=redis_url, redis_prefix=redis_prefix)
        with served_replicas(tmp_path, env) as servers:
            db = Database(make_engine(db_url))
            member, other = (issue_key(db=db, tenant="sales", scopes=["chat"]) for _ in range(2))
            admin = issue_key(db=db, tenant="sales", scopes=["admin"]).token

            def call(i: int, key=member) -> httpx.Response:
                return httpx.post(f"{servers[i % 2].url}/api/t/sales/v1/chat/completions", timeout=120,
                                  headers={"Authorization": f"Bearer {key.token}", "X-Tenant-ID": "sales"},
                                  json={"model": "fast", "messages": MESSAGES, "max_tokens": MAX_TOKENS})

            with ThreadPoolExecutor(sent) as pool:
                futures = [pool.submit(call, i) for i in range(sent)]
                deadline = time.monotonic() + 120  # every request refused or at the provider (not a timing claim)
                while len(provider.requests) + sum(f.done() for f in futures) < sent and time.monotonic() < deadline:
                    time.sleep(0.05)
                provider.gate.set()
                responses = [f.result() for f in futures]
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] * fits + [429] * (sent - fits), [r.text for r in responses if r.status_code != 200]
            refusal = next(r for r in responses if r.status_code == 429).json()["error"]
            assert "your allowance of" in refusal["message"] and "for today in Sales" in refusal["message"]
            # Overshoot 0: what was used is what the admitted answers used, within the allowance.
            import redis

            client = redis.Redis.from_url(redis_url, decode_responses=True)
            counters = [k for k in client.scan_iter(f"{redis_prefix}:quota:sales:member:*:tokens:*")
                        if not k.endswith(":holds")]
            assert [int(client.get(k)) for k in counters] == [fits * 18]
            client.close()

            def allowance(tokens: int) -> None:  # set on replica 0
                r = httpx.post(f"{servers[0].url}/api/t/sales/usage/allowances", timeout=30,
                               headers={"Authorization": f"Bearer {admin}", "X-Tenant-ID": "sales"},
                               json={"subject": f"key:{member.key.id}", "tokens_per_day": tokens})
                assert r.status_code == 200, r.text

            # The answers settled (54 tokens used): room again for the member's next call, on either replica.
            assert call(1).status_code == 200
            allowance(fits * 18 + 18 + EST - 1)  # what is used plus one token short of a reservation
            refused = call(1)  # replica 1's next call has the new allowance
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "member_tokens_per_day"
            assert call(0, other).status_code == 200  # another member of the tenant is served
            allowance(100_000)
            assert call(1).status_code == 200
