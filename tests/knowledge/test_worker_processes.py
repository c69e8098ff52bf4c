"""`atrium worker` as real processes on one PostgreSQL-with-pgvector database (pgserver), the default vector store
there (pgvector) and a data dir of its own for every process: N workers process each document exactly once; a
SIGKILLed worker's job is taken over by the other after its lease, ending with exactly the right chunks in the
store (rows of `kb_chunk_vector`: no duplicate, no orphan); SIGTERM hands an unfinished job back;
ATRIUM_INGEST_WORKER=false leaves uploads queued for a worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from backend.db.models import KbDocument
from backend.knowledge.service import UploadFile
from tests.conftest import _SCRUB, REPO
from tests.knowledge.conftest import admin_of

pytestmark = pytest.mark.slow
SECRET = "s" * 48


def _manual(name: str, sections: int) -> bytes:
    parts = [f"# {name} field manual\n"]
    for s in range(sections):
        parts.append(f"\n## {name} procedure {s}\n")
        for p in range(3):
            parts.append(f"\nStep {s}.{p}: inspect {name} unit {s * 7 + p} for wear, record reading R{s}-{p} and "
                         f"replace gasket type G{(s + p) % 11} when the reading exceeds {40 + s} units.\n")
    return "".join(parts).encode()


@pytest.fixture
def shared(pgvector_url, make_settings):
    """Settings for the web pod of a deployment on PostgreSQL with pgvector (the default vector store there, no
    ATRIUM_SINGLE_NODE), and the environment for its worker processes (each gets a data dir of its own)."""
    env = {"DATABASE_URL": pgvector_url, "CHAINLIT_AUTH_SECRET": SECRET, "ATRIUM_EMBED_BATCH": "4",
           "ATRIUM_INGEST_LEASE_S": "5", "ATRIUM_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    settings = make_settings(**{k: v for k, v in env.items() if k not in ("PYTHONUNBUFFERED",)},
                             ATRIUM_INGEST_WORKER="false")
    assert settings.vector_store == "pgvector" and not settings.single_node
    return settings, env


@pytest.fixture
def app_side(shared):
    """The web pod's services with the in-process worker off: uploads are queued, never processed here."""
    from backend.container import build_services

    services = build_services(shared[0])
    yield services
    services.close()


class Worker:
    def __init__(self, tmp: Path, name: str, env: dict[str, str]) -> None:
        self.log_path = tmp / f"{name}.log"
        full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        full.update(env)
        data = tmp / name / "data"  # its own: nothing of a job's state is on a worker's disk
        data.mkdir(parents=True)
        full["ATRIUM_DATA_DIR"] = str(data)
        self.proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "worker"], cwd=REPO, env=full,
                                     stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)

    def records(self, msg: str) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("message") == msg:
                    out.append(rec)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _wait(predicate, what: str, workers: list[Worker], timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        for w in workers:
            assert w.proc.poll() is None or w.proc.returncode in (0, -9), w.log_path.read_text()[-3000:]
        time.sleep(0.2)
    logs = "\n".join(w.log_path.read_text()[-2000:] for w in workers)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def _rows(services) -> dict[str, KbDocument]:
    with services.db.session() as session:
        return {d.id: d for d in session.exec(select(KbDocument))}


def _done(services, doc_id: str) -> bool:
    """Ready, and its lease released (the worker marks it ready, retires older versions, then lets go)."""
    doc = _rows(services)[doc_id]
    return doc.status == "ready" and doc.claimed_by is None


def _assert_exact_chunks(services, doc: KbDocument, data: bytes) -> None:
    """The store holds chunks 0..n-1 of the document once each, with the expected texts and a vector each: no
    duplicate, no orphan (the rows of pgvector's table, read with SQL of our own)."""
    _, expected = services.knowledge.worker.chunks_of(doc, data)
    assert doc.status == "ready" and doc.chunk_total == doc.chunks_done == len(expected)
    engine = sa.create_engine(services.settings.sql_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT chunk_index, count(*), count(embedding) FROM kb_chunk_vector WHERE tenant = :t AND "
                "document_id = :d GROUP BY chunk_index"), {"t": doc.tenant, "d": doc.id}).all()
            texts = list(conn.execute(sa.text("SELECT text FROM kb_chunk_vector WHERE tenant = :t AND document_id = :d "
                                              "ORDER BY chunk_index"), {"t": doc.tenant, "d": doc.id}).scalars())
    finally:
        engine.dispose()
    assert {r[0]: (r[1], r[2]) for r in rows} == {i: (1, 1) for i in range(len(expected))}
    assert texts == [c.text for c in expected]


def test_uploads_wait_in_queued_without_an_in_process_worker(app_side):
    up = app_side.knowledge.upload(admin_of("sales"), "sales", [UploadFile("a.md", _manual("alpha", 2))])
    (doc_id,) = [d["id"] for d in up["documents"]]
    assert app_side.knowledge.worker._thread is None  # ATRIUM_INGEST_WORKER=false: no thread was started
    time.sleep(3)  # longer than the worker's poll interval: a running thread would have claimed it by now
    doc = _rows(app_side)[doc_id]
    assert (doc.status, doc.claimed_by, doc.attempts) == ("queued", None, 0)


def test_two_workers_process_every_document_exactly_once(tmp_path, shared, app_side):
    _, env = shared
    files = {f"manual-{i}.md": _manual(f"unit{i}", 4 + i % 3) for i in range(8)}
    up = app_side.knowledge.upload(admin_of("sales"), "sales", [UploadFile(n, d) for n, d in files.items()])
    ids = {d["id"]: d["filename"] for d in up["documents"]}
    assert len(ids) == len(files)
    workers = [Worker(tmp_path, f"w{i}", env) for i in range(2)]
    try:
        _wait(lambda: all(d.status == "ready" for d in _rows(app_side).values()), "all documents ready", workers)
        for w in workers:
            w.proc.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.proc.wait(60) == 0, w.log_path.read_text()[-3000:]
            assert w.records("ingestion worker stopped")
    finally:
        for w in workers:
            w.stop()
    claims = Counter(rec["document_id"] for w in workers for rec in w.records("ingestion job claimed"))
    assert claims == Counter(list(ids))  # each document claimed once, by one of the two workers
    rows = _rows(app_side)
    assert all(rows[i].attempts == 1 and rows[i].claimed_by is None and rows[i].lease_until is None for i in ids)
    for doc_id, name in ids.items():
        _assert_exact_chunks(app_side, rows[doc_id], files[name])
    assert app_side.knowledge.store.count("sales") == sum(rows[i].chunk_total for i in ids)
    print("documents per worker:", [len(w.records("ingestion job claimed")) for w in workers])


def test_a_killed_workers_job_is_taken_over_after_its_lease(tmp_path, shared, app_side):
    _, env = shared
    workers = [Worker(tmp_path, f"w{i}", env) for i in range(2)]
    try:
        # Both are running before the upload: their start-up resume has passed, so the survivor can only get
        # the job by its lease running out (not by the same-host dead-pid shortcut of a restart).
        _wait(lambda: all(w.records("ingestion worker started") for w in workers), "both workers", workers)
        data = _manual("turbine", 120)
        up = app_side.knowledge.upload(admin_of("sales"), "sales", [UploadFile("turbine.md", data)])
        (doc_id,) = [d["id"] for d in up["documents"]]
        held = _wait(lambda: (d := _rows(app_side)[doc_id]).chunks_done > 0 and d, "the first batch", workers)
        holder = next(w for w in workers if held.claimed_by.split(":")[1] == str(w.proc.pid))
        survivor = next(w for w in workers if w is not holder)
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(30)
        killed = _rows(app_side)[doc_id]
        assert killed.status == "embedding" and 0 < killed.chunks_done < killed.chunk_total  # really mid-document
        assert killed.claimed_by == held.claimed_by and killed.lease_until is not None
        _wait(lambda: _done(app_side, doc_id), "the takeover to finish", [survivor])
    finally:
        for w in workers:
            w.stop()
    assert [r["document_id"] for r in survivor.records("ingestion job claimed")] == [doc_id]
    assert not survivor.records("resuming unfinished ingestion jobs")
    doc = _rows(app_side)[doc_id]
    assert doc.attempts == 2 and doc.claimed_by is None
    _assert_exact_chunks(app_side, doc, data)
    assert app_side.knowledge.store.count("sales") == doc.chunk_total
    assert app_side.knowledge.store.vector_count("sales") == doc.chunk_total


def test_sigterm_hands_the_job_back_with_its_checkpoint(tmp_path, shared, app_side):
    _, env = shared
    data = _manual("boiler", 120)
    up = app_side.knowledge.upload(admin_of("sales"), "sales", [UploadFile("boiler.md", data)])
    (doc_id,) = [d["id"] for d in up["documents"]]
    worker = Worker(tmp_path, "w", env)
    try:
        _wait(lambda: worker.records("ingestion progress"), "the worker to embed", [worker])
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(60) == 0, worker.log_path.read_text()[-3000:]
    finally:
        worker.stop()
    doc = _rows(app_side)[doc_id]
    handed = worker.records("stopping: ingestion job handed back")
    if doc.status == "ready":  # the document was finished before the signal arrived: nothing to hand back
        assert not handed
        return
    assert [r["document_id"] for r in handed] == [doc_id]
    # Claimable at once by anyone, checkpoint kept, and the stop not counted as a failed attempt.
    assert (doc.status, doc.claimed_by, doc.lease_until, doc.attempts) == ("embedding", None, None, 0)
    assert doc.chunks_done > 0 and doc.chunks_done % 4 == 0  # whole batches only
    progress = worker.records("ingestion progress")
    assert progress[-1]["chunks_done"] == doc.chunks_done
    again = Worker(tmp_path, "again", env)
    try:
        _wait(lambda: _done(app_side, doc_id), "the next worker to finish", [again])
    finally:
        again.stop()
    _assert_exact_chunks(app_side, _rows(app_side)[doc_id], data)
