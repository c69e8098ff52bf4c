"""`atrium worker`'s own /metrics, on a real worker process (PostgreSQL with pgvector, as in production): after it
ingests an upload, the scrape (Prometheus' own parser) counts the job under its tenant with the chunks the store
holds, reports the backlog it cannot take (another worker's leased job: queue depth 1, its age), and the process's
own metrics; only the scraper's token opens it (a wrong one is a 401, audited), and it listens on 127.0.0.1 unless
told otherwise. Without ATRIUM_METRICS_TOKEN nothing listens."""

from __future__ import annotations

import socket
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from backend.db.models import AuditEvent, KbDocument, utcnow
from backend.knowledge.service import UploadFile
from tests.knowledge.conftest import admin_of
from tests.knowledge.test_worker_processes import Worker, _done, _manual, _rows, _wait

pytestmark = pytest.mark.slow
SECRET = "s" * 48
TOKEN = "worker-scrape-" + "t0ken" * 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def shared(pgvector_url, make_settings):
    env = {"DATABASE_URL": pgvector_url, "CHAINLIT_AUTH_SECRET": SECRET, "ATRIUM_EMBED_BATCH": "4",
           "ATRIUM_INGEST_LEASE_S": "5", "ATRIUM_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
           "ATRIUM_METRICS_TOKEN": TOKEN}
    settings = make_settings(**{k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}, ATRIUM_INGEST_WORKER="false")
    return settings, env


@pytest.fixture
def app_side(shared):
    from backend.container import build_services

    services = build_services(shared[0])
    yield services
    services.close()


def scrape(port: int, token: str = TOKEN) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def listening_on(port: int) -> list[str]:
    """The IPv4 addresses a socket listens on at `port` (/proc/net/tcp: little-endian hex address, state 0A)."""
    out = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            out.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return out


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(m: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in m.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_the_worker_serves_its_ingestion_and_process_metrics(tmp_path, shared, app_side):
    _, env = shared
    # A job another worker holds (a live lease elsewhere): in the backlog, never taken by this one.
    with app_side.db.session() as s:
        s.add(KbDocument(id="held-elsewhere", tenant="engineering", title="t", filename="t.md", content_type="text",
                         content_hash="h-held", status="embedding", claimed_by="elsewhere:1:abc",
                         lease_until=utcnow() + timedelta(days=1), created_at=utcnow() - timedelta(hours=1)))
        s.commit()
    port = _free_port()
    worker = Worker(tmp_path, "w", {**env, "ATRIUM_WORKER_METRICS_PORT": str(port)})
    try:
        _wait(lambda: worker.records("worker metrics served"), "the metrics port", [worker])
        data = _manual("pump", 5)
        up = app_side.knowledge.upload(admin_of("sales"), "sales", [UploadFile("pump.md", data)])
        (doc_id,) = [d["id"] for d in up["documents"]]
        _wait(lambda: _done(app_side, doc_id), "the upload to be ingested", [worker])

        r = scrape(port)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        m = samples(r.text)
        doc = _rows(app_side)[doc_id]
        assert value(m, "atrium_ingestion_jobs_total", tenant="sales", outcome="ready") == 1
        assert value(m, "atrium_ingestion_jobs_total") == 1  # nothing else, under no other tenant
        assert value(m, "atrium_ingestion_chunks_total", tenant="sales") == doc.chunk_total > 0
        assert value(m, "atrium_ingestion_job_duration_seconds_count", tenant="sales") == 1
        assert value(m, "atrium_ingestion_queue_depth", tenant="engineering") == 1
        assert value(m, "atrium_ingestion_queue_depth", tenant="sales") == 0
        assert value(m, "atrium_ingestion_oldest_job_age_seconds", tenant="engineering") >= 3600
        assert value(m, "process_cpu_seconds_total") > 0 and value(m, "process_resident_memory_bytes") > 0

        wrong = scrape(port, token="not-the-token-at-all")
        assert wrong.status_code == 401 and "ATRIUM_METRICS_TOKEN" in wrong.text
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 404
        with app_side.db.session() as s:
            denied = s.exec(select(AuditEvent).where(AuditEvent.reason == "bad_metrics_token")).all()
        assert sum(e.count for e in denied) == 2 and {e.route for e in denied} == {"/metrics"}
        # Only on the loopback address by default (the kernel's table of listening sockets says where).
        assert listening_on(port) == ["127.0.0.1"]
    finally:
        worker.stop()


def test_without_a_token_nothing_listens(tmp_path, shared):
    _, env = shared
    port = _free_port()
    worker = Worker(tmp_path, "w", {**{k: v for k, v in env.items() if k != "ATRIUM_METRICS_TOKEN"},
                                   "ATRIUM_WORKER_METRICS_PORT": str(port)})
    try:
        _wait(lambda: worker.records("ingestion worker started"), "the worker", [worker])
        assert [r["why"] for r in worker.records("worker metrics not served")] == ["ATRIUM_METRICS_TOKEN is unset"]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        worker.stop()
