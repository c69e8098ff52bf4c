"""Crash-resume: `atrium ingest` is SIGKILLed mid-job (a real subprocess); the next start of the app
finishes the job, and the store holds exactly the expected chunks: no duplicate, no orphan."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.db.models import KbDocument
from tests.conftest import REPO
from tests.knowledge.conftest import admin_of, wait_documents


def _big_document() -> bytes:
    parts = ["# Field service manual\n"]
    for s in range(30):
        parts.append(f"\n## Procedure {s}\n")
        for p in range(3):
            parts.append(f"\nStep {s}.{p}: inspect unit {s * 7 + p} for wear, record reading R{s}-{p} and "
                         f"replace gasket type G{(s + p) % 11} when the reading exceeds {40 + s} units.\n")
    return "".join(parts).encode()


def _job(db: Path) -> tuple[str, int, int] | None:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT status, chunks_done, chunk_total FROM kb_document").fetchone()
    except sqlite3.OperationalError:  # the subprocess is still creating the schema
        return None


@pytest.mark.slow
def test_killed_ingestion_resumes_without_duplicates(tmp_path, make_settings, data_dir):
    doc_path = tmp_path / "manual.md"
    doc_path.write_bytes(_big_document())
    env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir), "ATRIUM_EMBED_BATCH": "4", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "ingest.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "ingest", "--tenant", "sales", str(doc_path)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    db = data_dir / "atrium.db"
    deadline = time.monotonic() + 180
    state = None
    while time.monotonic() < deadline and proc.poll() is None:
        state = _job(db) if db.exists() else None
        if state and state[0] == "embedding" and state[1] >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "ingest.log").read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    status, done, total = _job(db)
    assert status == "embedding" and 0 < done < total, (status, done, total)  # really killed mid-job

    from backend.container import build_services

    services = build_services(make_settings(ATRIUM_EMBED_BATCH="4"))  # the app's start resumes the job
    try:
        kb = services.knowledge
        (doc,) = kb.list_documents(admin_of("sales"), "sales")
        (doc,) = wait_documents(kb, admin_of("sales"), "sales", [doc["id"]])
        assert doc["status"] == "ready" and doc["chunks"] == total
        with services.db.session() as session:
            row = session.get(KbDocument, doc["id"])
        _, expected = kb.worker.chunks_of(row, doc_path.read_bytes())
        assert len(expected) == total
        assert kb.store.count("sales") == total and kb.store.vector_count("sales") == total
        conn = kb.store.conn
        rows = conn.execute("SELECT chunk_index, count(*) FROM chunks WHERE tenant='sales' GROUP BY chunk_index")
        assert dict(rows.fetchall()) == {i: 1 for i in range(total)}
        texts = [r[0] for r in conn.execute("SELECT text FROM chunks WHERE tenant='sales' ORDER BY chunk_index")]
        assert texts == [c.text for c in expected]
    finally:
        services.close()
