"""The README's "several replicas" recipe, run: two `atrium serve` replicas (A, B) and two `atrium worker`s on one
PostgreSQL-with-pgvector database (pgserver) and one Redis, with the same DATABASE_URL, REDIS_URL and
CHAINLIT_AUTH_SECRET, no ATRIUM_SINGLE_NODE, the default vector store (pgvector, from the PostgreSQL URL),
ATRIUM_INGEST_WORKER=false on the replicas and a data dir of its own for every process (nothing shared on disk).

Through the public HTTP API only: a document uploaded through A is processed by a worker and found by search and
cited by chat through B; a prompt version saved and promoted through A is what B answers with, and a save on the
stale base through B is a 409; a tenant's requests/min holds exactly across the replicas; a session signed in on A
works on B until it is signed out on A; both replicas, started together on the empty database, came up and one of
them migrated it. The processes are started once for the module."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from backend.auth.api_keys import issue_key
from backend.db.engine import Database, make_engine
from tests.conftest import _SCRUB, REPO, LiveServer, free_port, replica_env
from tests.llm.fakes import make_config_dir, mock, set_tenant

pytestmark = pytest.mark.slow

SECRET = "replicas-" + "r" * 48
ANSWER = "Partners in the Zephyr programme earn a 17 percent rebate."
SIGNOFF = "-- promoted on replica A"
RPM = 3  # finance's requests per minute in this config
PRICING = b"""# Zephyr partner programme

## Rebates

Partners enrolled in the Zephyr partner programme earn a 17 percent rebate on every renewal they bring in.
The rebate is paid quarterly, after the customer's invoice is settled.

## Eligibility

Only partners with a signed Zephyr agreement and two certified engineers qualify for the rebate.
"""
QUESTION = "What rebate do Zephyr programme partners earn on renewals?"


@dataclass
class Fleet:
    a: LiveServer
    b: LiveServer
    workers: list[subprocess.Popen]
    worker_logs: list[Path]
    db_url: str

    def records(self, log: Path, msg: str) -> list[dict]:
        return [rec for line in log.read_text(errors="replace").splitlines() if line.startswith("{")
                and (rec := json.loads(line)).get("message") == msg]

    def sql(self, query: str, **params: object) -> list[sa.Row]:
        engine = sa.create_engine(self.db_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(query), params))
        finally:
            engine.dispose()


def _env(data: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update({"ATRIUM_DATA_DIR": str(data), "ATRIUM_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **extra})
    return env


def _spawn(tmp: Path, name: str, args: list[str], extra: dict[str, str]) -> tuple[subprocess.Popen, Path, dict]:
    data = tmp / name / "data"  # every process its own data dir: nothing is shared on disk
    data.mkdir(parents=True)
    env = _env(data, extra)
    log = tmp / name / "process.log"
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", *args], cwd=REPO, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    return proc, log, env


def _redis_url(worker_id: str) -> str:
    """The test Redis database of this pytest-xdist worker (as conftest's redis_url picks it)."""
    url = os.environ.get("ATRIUM_TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis not available: set ATRIUM_TEST_REDIS_URL (make test does when 127.0.0.1:6379 answers)")
    if worker_id.startswith("gw"):
        base, _, db = url.rpartition("/")
        url = f"{base}/{max(0, int(db or 15) - int(worker_id[2:]))}"
    return url


def _wait_up(servers: list[LiveServer], timeout: float = 240) -> None:
    """Until every server's /healthz answers (they start side by side); a server that exits is an error."""
    up: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(up) < len(servers) and time.monotonic() < deadline:
        for r in servers:
            if r.process.poll() is not None:
                raise RuntimeError(f"server {r.url} exited with {r.process.returncode}:\n{r.log_tail()}")
            try:
                if httpx.get(f"{r.url}/healthz", timeout=1).status_code == 200:
                    up.add(r.url)
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    if len(up) < len(servers):
        raise RuntimeError("the servers did not start:\n" + "\n".join(r.log_tail() for r in servers))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pgvector_server: str, worker_id: str) -> Iterator[Fleet]:

    redis_url = _redis_url(worker_id)
    prefix = f"atrium-replicas-{uuid.uuid4().hex[:10]}"
    name = f"atrium_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pgvector_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))  # empty: no table, no extension
    db_url = pgvector_server.replace("/postgres?", f"/{name}?", 1)
    tmp = tmp_path_factory.mktemp("replicas")
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-sonnet-5-5", ANSWER)],
                          policy={"allowed_tiers": ["fast"]},
                          quotas={"requests_per_minute": 1000, "user_requests_per_minute": 1000,
                                  "tokens_per_day": None, "monthly_budget_usd": None})
    set_tenant(cfg, "finance", quotas={"requests_per_minute": RPM})
    shared = replica_env(config_dir=cfg, database_url=db_url, redis_url=redis_url, redis_prefix=prefix,
                         CHAINLIT_AUTH_SECRET=SECRET)
    started: list[subprocess.Popen] = []
    try:
        replicas = []
        for label in ("a", "b"):  # both at once, before either is up: they race for the empty database
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc, log, env = _spawn(tmp, label, ["serve", "--host", "127.0.0.1", "--port", str(port)],
                                    {**shared, "ATRIUM_PUBLIC_URL": url})
            started.append(proc)
            replicas.append(LiveServer(url=url, data_dir=Path(env["ATRIUM_DATA_DIR"]), env=env, process=proc,
                                       log_path=log))
        _wait_up(replicas)
        workers, logs = [], []
        for i in range(2):
            proc, log, _ = _spawn(tmp, f"worker{i}", ["worker"], shared)
            started.append(proc)
            workers.append(proc)
            logs.append(log)
        yield Fleet(a=replicas[0], b=replicas[1], workers=workers, worker_logs=logs, db_url=db_url)
    finally:
        _clean_up(started, redis_url=redis_url, prefix=prefix, admin=admin, database=name)


def _clean_up(started: list[subprocess.Popen], *, redis_url: str, prefix: str, admin: sa.Engine,
              database: str) -> None:
    """Stop the processes (SIGTERM, then kill), delete their Redis keys and drop their database."""
    import redis

    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


def _poll(check, what: str, fleet: Fleet, deadline_s: float = 300):  # noqa: ANN001, ANN202 - any predicate
    """`check()` until it returns something truthy (bounded by a deadline; not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for proc, log in zip(fleet.workers, fleet.worker_logs, strict=True):
            assert proc.poll() is None, log.read_text()[-3000:]
        if value := check():
            return value
        time.sleep(0.3)
    logs = "\n".join(log.read_text()[-2000:] for log in fleet.worker_logs)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


@pytest.fixture(scope="module")
def document(fleet: Fleet) -> dict:
    """The Zephyr pricing document, uploaded through A and made ready by one of the workers."""
    carol = fleet.a.login("carol")
    r = httpx.post(f"{fleet.a.url}/api/t/sales/documents", cookies=carol, timeout=60,
                   files={"file": ("zephyr.md", PRICING, "text/markdown")})
    assert r.status_code == 202, r.text
    (doc_id,) = [d["id"] for d in r.json()["documents"]]
    b_carol = fleet.b.login("carol")

    def ready() -> dict | None:
        got = httpx.get(f"{fleet.b.url}/api/t/sales/documents/{doc_id}", cookies=b_carol, timeout=30)
        assert got.status_code == 200, got.text
        return got.json() if got.json()["status"] == "ready" else None

    return _poll(ready, "the document to be ready", fleet)


def test_both_replicas_started_together_on_the_empty_database_came_up_and_one_migrated(fleet):
    said = [[json.loads(ln).get("message") for ln in r.log_path.read_text(errors="replace").splitlines()
             if ln.startswith("{")] for r in (fleet.a, fleet.b)]
    assert sorted(m.count("database migrated") for m in said) == [0, 1]  # one migrated ...
    assert sorted(m.count("database schema is current") for m in said) == [0, 1]  # ... the other found it done
    for r in (fleet.a, fleet.b):
        assert httpx.get(f"{r.url}/readyz", timeout=30).status_code == 200, r.log_tail()
    for r in (fleet.a, fleet.b):  # no start-up check refused (and no ATRIUM_SINGLE_NODE to silence one)
        assert "ATRIUM_SINGLE_NODE" not in r.env and "VECTOR_STORE" not in r.env
        assert not [ln for ln in r.log_path.read_text().splitlines() if ln.startswith("error:")]


def test_a_document_uploaded_through_a_is_processed_by_a_worker_and_found_and_cited_through_b(fleet, document):
    doc_id = document["id"]
    assert document["chunks"] == document["chunks_done"] > 0
    claims = [[r["document_id"] for r in fleet.records(log, "ingestion job claimed")] for log in fleet.worker_logs]
    assert sorted(c.count(doc_id) for c in claims) == [0, 1]  # one worker took it, once
    for r in (fleet.a, fleet.b):  # the web pods run no ingestion (ATRIUM_INGEST_WORKER=false)
        assert not fleet.records(r.log_path, "ingestion job claimed")
    # The vectors are in the shared database (pgvector, the default on PostgreSQL), not in a pod's own file.
    [(rows, vectors)] = fleet.sql("select count(*), count(embedding) from kb_chunk_vector where tenant = 'sales' "
                                  "and document_id = :d", d=doc_id)
    assert rows == vectors == document["chunks"]
    for r in (fleet.a, fleet.b):
        assert not list(r.data_dir.rglob("*.db"))  # no atrium.db, no vectors.db: nothing of the state is per pod

    cookies = fleet.b.login("alice")
    found = httpx.post(f"{fleet.b.url}/api/t/sales/search", cookies=cookies, timeout=60,
                       json={"query": "Zephyr partner rebate on renewals"})
    assert found.status_code == 200, found.text
    hits = found.json()["results"]
    assert hits and hits[0]["document_id"] == doc_id and "17 percent rebate" in hits[0]["text"]

    answer = httpx.post(f"{fleet.b.url}/api/t/sales/chat", cookies=cookies, timeout=120,
                        json={"assistant": "sales-assistant", "message": QUESTION})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert re.sub(r" ?\[\d+\]", "", body["answer"]).startswith(ANSWER) and body["model"]  # with its [n] marker
    assert doc_id in {c["document_id"] for c in body["citations"]}
    assert any("17 percent rebate" in c["quote"] for c in body["citations"])


def test_a_prompt_promoted_through_a_is_what_b_answers_with_and_a_stale_save_through_b_is_a_409(fleet, document):
    api = "/api/t/sales/prompts/sales-assistant"
    question = "Who qualifies for the Zephyr rebate?"
    alice_b = fleet.b.login("alice")

    def ask() -> dict:
        r = httpx.post(f"{fleet.b.url}/api/t/sales/chat", cookies=alice_b, timeout=120,
                       json={"assistant": "sales-assistant", "message": question})
        assert r.status_code == 200, r.text
        return r.json()

    before = ask()
    assert before["prompt_version"] == 1 and SIGNOFF not in before["answer"]

    bob_a = fleet.a.login("bob")
    v1 = httpx.get(f"{fleet.a.url}{api}/versions/1", cookies=bob_a, timeout=30).json()
    config = {**v1["config"], "tier": "fast"}  # the tier this config allows (the repo's prompt says local)
    saved = httpx.post(f"{fleet.a.url}{api}/versions", cookies=bob_a, timeout=60, json={
        "body": v1["body"], "config": {**config, "signoff": SIGNOFF}, "message": "sign-off", "base_version": 1})
    assert saved.status_code == 201, saved.text
    assert saved.json()["version"] == 2

    bob_b = fleet.b.login("bob")
    listed = httpx.get(f"{fleet.b.url}{api}", cookies=bob_b, timeout=30).json()
    assert [v["version"] for v in listed["versions"]] == [2, 1]  # B lists what A saved
    stale = httpx.post(f"{fleet.b.url}{api}/versions", cookies=bob_b, timeout=60, json={
        "body": v1["body"] + "\nanother edit\n", "config": config, "message": "stale", "base_version": 1})
    assert stale.status_code == 409, stale.text
    assert stale.json()["error"] == "version_conflict" and stale.json()["latest_version"] == 2

    moved = httpx.put(f"{fleet.a.url}{api}/labels/production", cookies=fleet.a.login("carol"), json={"version": 2},
                      timeout=30)
    assert moved.status_code == 200, moved.text
    after = ask()  # the same first-turn question through B: not B's cached answer of version 1
    assert after["prompt_version"] == 2 and not after["cached"], after
    assert after["answer"].rstrip().endswith(SIGNOFF), after["answer"]
    [(versions,)] = fleet.sql("select count(*) from prompt_version where tenant = 'sales' and "
                              "assistant = 'sales-assistant'")
    assert versions == 2  # the 409 wrote nothing


def test_a_tenants_requests_per_minute_hold_exactly_across_the_replicas(fleet):
    db = Database(make_engine(fleet.db_url))
    try:
        key = issue_key(db=db, tenant="finance", scopes=["chat"]).token
    finally:
        db.engine.dispose()
    headers = {"Authorization": f"Bearer {key}", "X-Tenant-ID": "finance"}
    statuses = []
    for i in range(2 * RPM):  # alternated: A, B, A, B, ...
        server = (fleet.a, fleet.b)[i % 2]
        r = httpx.post(f"{server.url}/api/t/finance/v1/chat/completions", headers=headers, timeout=60,
                       json={"model": "fast", "messages": [{"role": "user", "content": f"question {i}"}]})
        statuses.append(r.status_code)
        if r.status_code == 200:
            assert r.json()["choices"][0]["message"]["content"] == ANSWER
        else:  # the tenant's limit (not the key's own, 1,000 here), counted once for both replicas
            assert r.headers.get("retry-after"), r.headers
            assert r.json()["error"]["message"].startswith(f"Finance has reached its limit of {RPM} requests per "
                                                           "minute"), r.text
    assert statuses == [200] * RPM + [429] * RPM, statuses


def test_a_session_signed_in_on_a_works_on_b_until_it_is_signed_out_on_a(fleet):
    r = httpx.post(f"{fleet.a.url}/chat/login", data={"username": "erin", "password": "atrium"}, timeout=30)
    assert r.status_code == 200, r.text
    cookies = dict(r.cookies)
    me = httpx.get(f"{fleet.b.url}/api/me", cookies=cookies, timeout=30)
    assert me.status_code == 200, me.text
    assert httpx.get(f"{fleet.b.url}/api/t/engineering/documents", cookies=cookies, timeout=30).status_code == 200

    out = httpx.post(f"{fleet.a.url}/chat/logout", cookies=cookies, headers={"Origin": fleet.a.url}, json={},
                     timeout=30)
    assert out.status_code == 200, out.text
    refused = httpx.get(f"{fleet.b.url}/api/me", cookies=cookies, timeout=30)
    assert (refused.status_code, refused.json()["error"]) == (401, "session_signed_out"), refused.text
    assert httpx.get(f"{fleet.b.url}/api/t/engineering/documents", cookies=cookies, timeout=30).status_code == 401
