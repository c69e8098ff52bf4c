"""Nothing lost when a process dies or a connection drops (issue 16), with served processes on the real PostgreSQL
and Redis: PostgreSQL connections terminated every second under a bounded load through the official SDK lose no
call and no usage row; a replica SIGKILLed with answers streaming leaves `interrupted` turns with the tokens they
had streamed, marked by the survivor, and no reservation counted in Redis; a refusal meanwhile separates what was
used from what answers in progress hold."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from openai import OpenAI

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from tests.conftest import replica_env, start_server, stop_server
from tests.llm.fakes import SlowOpenAI, make_config_dir, mock, set_tenant

NO_QUOTAS = {"requests_per_minute": None, "user_requests_per_minute": None, "tokens_per_day": None,
             "monthly_budget_usd": None}


def _sdk(server: Any, key: str, tenant: str = "finance") -> OpenAI:
    return OpenAI(base_url=f"{server.url}/api/t/{tenant}/v1", api_key=key, max_retries=0, timeout=120,
                  default_headers={"X-Tenant-ID": tenant})


def _poll(check: Any, *, deadline_s: float = 90, every: float = 0.3) -> Any:
    """`check()` until it returns something truthy (bounded by a deadline; not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(every)


class _Terminator:
    """Terminates every other PostgreSQL connection to the database once a second (a fleet's connection churn)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.killed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self._stop.wait(1.0):
                self.killed += int(conn.execute(sa.text(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid()")).scalar() or 0)

    def __enter__(self) -> _Terminator:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()


def test_connections_terminated_every_second_lose_no_call_and_no_usage_row(tmp_path, postgres_url):
    cfg = make_config_dir(tmp_path, model_list=[mock("smart", "anthropic/claude-sonnet-5-5", "the full answer")],
                          quotas=NO_QUOTAS)
    # One pod on the machine's PostgreSQL (no pgvector; nothing is ingested here)
    server = start_server(tmp_path / "app", {"ATRIUM_CONFIG_DIR": str(cfg), "DATABASE_URL": postgres_url,
                                             "ATRIUM_INGEST_WORKER": "false", "ATRIUM_SINGLE_NODE": "true",
                                             "VECTOR_STORE": "sqlite", "CHAINLIT_AUTH_SECRET": "d" * 48})
    db = Database(make_engine(postgres_url))
    try:
        key = issue_key(db=db, tenant="finance", scopes=["chat"]).token
        sdk = _sdk(server, key)
        calls = 300  # bounded; long enough for the churn to hit commits in flight (several seconds)

        def call(i: int) -> str:
            messages = [{"role": "user", "content": f"question {i}"}]
            if i % 2 == 0:
                return sdk.chat.completions.create(model="smart", messages=messages).choices[0].message.content
            text, finish = "", None
            for chunk in sdk.chat.completions.create(model="smart", messages=messages, stream=True):
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
            assert finish == "stop"  # the stream ran to its end (the SDK stops at [DONE])
            return text

        with _Terminator(postgres_url) as churn, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(call, range(calls)))
        assert answers == ["the full answer"] * calls
        assert churn.killed > 0  # connections really were dropped under the load

        def rows() -> list[Any]:
            with db.engine.connect() as conn:
                return conn.execute(sa.text("select turn_key, status, outcome from chat_turn where tenant = 'finance' "
                                            "and channel = 'openai'")).all()

        done = _poll(lambda: len(rows()) == calls and all(r.status == "completed" for r in rows()))
        found = rows()
        assert done, (len(found), server.log_tail())
        assert len({r.turn_key for r in found}) == calls and {r.outcome for r in found} == {"ok"}
        log = server.log_path.read_text()
        print(f"churn: {churn.killed} connections terminated; {log.count('usage write failed: retrying')} failed "
              f"usage writes retried, {log.count('rows kept in the outbox')} batches through the outbox")  # pytest -s
    finally:
        stop_server(server)
        db.engine.dispose()


def test_a_replica_killed_mid_answer_leaves_interrupted_turns_and_no_reservation(tmp_path, postgres_url, redis_url,
                                                                                  redis_prefix):
    with SlowOpenAI() as provider:
        cfg = make_config_dir(tmp_path, model_list=[
            {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                       "api_base": provider.url}}], quotas=NO_QUOTAS)
        set_tenant(cfg, "finance", quotas={"tokens_per_day": 3500})
        env = replica_env(config_dir=cfg, database_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix,
                          ATRIUM_LEASE_S="3", ATRIUM_TURN_PROGRESS_S="0.2", CHAINLIT_AUTH_SECRET="d" * 48)
        victim = start_server(tmp_path / "victim", env)
        survivor = start_server(tmp_path / "survivor", env)
        db = Database(make_engine(postgres_url))
        threads = ThreadPoolExecutor(3)
        try:
            key = issue_key(db=db, tenant="finance", scopes=["chat"]).token
            headers = {"Authorization": f"Bearer {key}", "X-Tenant-ID": "finance"}
            body = {"model": "smart", "max_tokens": 1000, "stream": True,
                    "messages": [{"role": "user", "content": "tell me a long story"}]}

            def stream_until_killed() -> int:
                got = 0
                try:
                    with httpx.stream("POST", f"{victim.url}/api/t/finance/v1/chat/completions", json=body,
                                      headers=headers, timeout=120) as r:
                        for line in r.iter_lines():
                            got += line.startswith("data: {")
                except httpx.HTTPError:
                    pass  # the replica was killed under it
                return got

            streams = [threads.submit(stream_until_killed) for _ in range(3)]

            def streaming() -> list[Any]:
                with db.engine.connect() as conn:
                    return conn.execute(sa.text(
                        "select id, completion_tokens from chat_turn where tenant = 'finance' and "
                        "status = 'streaming' and completion_tokens > 0")).all()

            in_flight = _poll(lambda: len(streaming()) == 3)
            assert in_flight, victim.log_tail()
            ids = sorted(r.id for r in streaming())

            # Three answers in progress hold ~3,000 of 3,500 tokens; nothing is used yet: the refusal says so.
            sdk = _sdk(survivor, key)
            refused = httpx.post(f"{survivor.url}/api/t/finance/v1/chat/completions", headers=headers,
                                 json={**body, "stream": False}, timeout=60)
            assert refused.status_code == 429, refused.text
            message = refused.json()["error"]["message"]
            assert message.startswith("Finance has used 0 of its 3,500 tokens today; "), message
            assert message.endswith("more are reserved by answers in progress: retry when they finish."), message

            victim.process.kill()  # SIGKILL: no clean-up of any kind
            victim.process.wait(30)
            assert all(f.result(timeout=60) > 0 for f in streams)  # each had received part of its answer

            def interrupted() -> list[Any]:
                with db.engine.connect() as conn:
                    return conn.execute(sa.text(
                        "select id, status, outcome, completion_tokens from chat_turn where id = any(:ids)"),
                        {"ids": ids}).all()

            marked = _poll(lambda: all(r.status == "interrupted" for r in interrupted()))
            rows = interrupted()
            assert marked, (rows, survivor.log_tail())
            assert {r.outcome for r in rows} == {"interrupted"} and all(r.completion_tokens > 0 for r in rows)

            # The victim's holds lapse a lease after its last renewal, which may come up to lease/3 after its last
            # heartbeat in SQL: wait for them (in Redis's own clock), then the same request fits, through the survivor.
            import redis

            client = redis.Redis.from_url(redis_url, decode_responses=True)
            counter = f"{redis_prefix}:quota:finance:tokens:{datetime.now(UTC):%Y%m%d}"

            def holds_lapsed() -> bool:
                secs, micros = client.time()
                return client.zcount(f"{counter}:holds", secs * 1000 + micros // 1000 + 1, "+inf") == 0

            assert _poll(holds_lapsed, deadline_s=30), client.zrange(f"{counter}:holds", 0, -1, withscores=True)
            answer = sdk.chat.completions.create(model="smart", max_tokens=1000,
                                                 messages=[{"role": "user", "content": "tell me a long story"}])
            assert answer.choices[0].message.content == "a quick answer"

            holds, used = client.zrange(f"{counter}:holds", 0, -1), int(client.get(counter) or 0)
            client.close()
            with db.engine.connect() as conn:
                in_sql = conn.execute(sa.text(
                    "select coalesce(sum(prompt_tokens + completion_tokens), 0) from chat_turn "
                    "where tenant = 'finance' and status <> 'streaming'")).scalar()
            assert holds == []  # no reservation left counted
            assert used == in_sql > 0  # the counter is what the rows say was used: partial answers included
        finally:
            threads.shutdown(wait=False, cancel_futures=True)
            stop_server(survivor)
            if victim.process.poll() is None:
                stop_server(victim)
            db.engine.dispose()
