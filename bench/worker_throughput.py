"""Ingestion throughput of `atrium worker` processes on PostgreSQL + pgvector, as a ratio of the raw embedder's
speed on the very same chunk texts, measured in the same run (the production shape: web pods only enqueue).

    .venv/bin/python bench/worker_throughput.py [--copies 2] [--workers 1 2]   # ~5 minutes on 2 CPU cores

For each worker count: a fresh pgvector database (bench/pgvector_server.py), the corpus uploaded with the
in-process worker off (every document `queued`), then N `atrium worker` processes started together and timed from
their start until every document is `ready` (their model load included, as a scaled-up Deployment pays it), and
from the first job taken (start-up over) to the last document ready.
The raw embedder is timed in this process just before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest_throughput import corpus, raw_rate  # noqa: E402
from pgvector_server import pgvector_database  # noqa: E402

from backend.auth.principal import MEMBER, TENANT_ADMIN, Principal  # noqa: E402
from backend.container import build_services  # noqa: E402
from backend.knowledge.chunk import chunk_blocks  # noqa: E402
from backend.knowledge.parse import parse, validate  # noqa: E402
from backend.knowledge.service import UploadFile  # noqa: E402
from backend.settings import Settings  # noqa: E402

ADMIN = Principal(subject="bench", name="bench", tenants={"sales": frozenset({MEMBER, TENANT_ADMIN})})


def run_workers(files: list[tuple[str, bytes]], workers: int, url: str) -> dict:
    env = {**os.environ, "DATABASE_URL": url, "ATRIUM_INGEST_WORKER": "false", "ATRIUM_SINGLE_NODE": "true",
           "CHAINLIT_AUTH_SECRET": "b" * 48}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(ATRIUM_DATA_DIR=tmp, DATABASE_URL=url, ATRIUM_INGEST_WORKER="false",
                            ATRIUM_SINGLE_NODE="true", CHAINLIT_AUTH_SECRET="b" * 48)
        services = build_services(settings)
        kb = services.knowledge
        ids = {d["id"] for d in kb.upload(ADMIN, "sales", [UploadFile(n, d) for n, d in files])["documents"]}
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "backend.cli", "worker"], cwd=REPO,
                                  env={**env, "ATRIUM_DATA_DIR": f"{tmp}/w{i}"}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for i in range(workers)]
        first = None  # when a worker first took a job: its start-up (imports, model load) is over
        try:
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                docs = kb.list_documents(ADMIN, "sales", limit=1000)
                if first is None and any(d["status"] != "queued" for d in docs):
                    first = time.perf_counter()
                if len(docs) == len(ids) and all(d["status"] == "ready" for d in docs):
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            working = time.perf_counter() - (first or started)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=120)
        chunks = sum(d["chunks"] for d in docs)
        assert all(d["status"] == "ready" for d in docs), [d["status"] for d in docs]
        assert chunks == kb.store.count("sales"), (chunks, kb.store.count("sales"))
        services.close()
    return {"chunks": chunks, "seconds": round(elapsed, 1), "chunks_per_s": round(chunks / elapsed, 1),
            "startup_s": round(elapsed - working, 1), "working_chunks_per_s": round(chunks / working, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pgvector-url", default=None, help="an admin URL of a PostgreSQL with pgvector "
                                                             "(default: a throw-away pgserver)")
    args = parser.parse_args()
    files = corpus(args.copies)
    from backend.knowledge.embed.local import LocalEmbedder

    settings = Settings(ATRIUM_DATA_DIR=tempfile.gettempdir())
    embedder = LocalEmbedder()
    embedder.warm()
    texts = []
    for name, data in files:
        doc = parse(data, validate(data, name, max_bytes=10**8)[1])
        for chunk in chunk_blocks(doc.blocks, count_tokens=embedder.count_tokens, max_tokens=settings.chunk_tokens,
                                  overlap=settings.chunk_overlap):
            texts.append(chunk.embed_text(doc.title or name))
    embedder.embed(texts[:64])  # warm-up
    results = []
    for n in args.workers:
        raw = raw_rate(embedder, texts, settings.embed_batch)
        with pgvector_database(args.pgvector_url) as url:
            run = run_workers(files, n, url)
        results.append({"workers": n, "raw_embedder_chunks_per_s": round(raw, 1), **run,
                        "ratio_to_raw": round(run["chunks_per_s"] / raw, 2),
                        "working_ratio_to_raw": round(run["working_chunks_per_s"] / raw, 2)})
        print(json.dumps(results[-1]), flush=True)
    out = {"documents": len(files), "chunks": len(texts), "cpus": os.cpu_count(), "runs": results}
    (REPO / "bench/results").mkdir(exist_ok=True)
    (REPO / "bench/results/worker-throughput.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
