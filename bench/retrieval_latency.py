"""Retrieval latency in the embedded store: a tenant-scoped top-5 query with 100k chunks over 20 tenants
(sqlite-vec + FTS5), dense and hybrid, excluding the query embedding — which is measured separately.

    .venv/bin/python bench/retrieval_latency.py [--chunks 100000] [--tenants 20] [--queries 400]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.knowledge.embed.local import LocalEmbedder  # noqa: E402
from backend.knowledge.retrieval import Retrieval  # noqa: E402
from backend.knowledge.stores.base import ChunkRecord, TenantStore, chunk_id  # noqa: E402
from backend.knowledge.stores.sqlite_vec import SqliteVecStore  # noqa: E402

DIM = 384


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--queries", type=int, default=400)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    random.seed(7)
    vocab = [f"w{i}" for i in range(20_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf-like word frequencies, like real text
    weights /= weights.sum()
    per_tenant = args.chunks // args.tenants
    tenants = [f"tenant-{i:02d}" for i in range(args.tenants)]
    result: dict = {"chunks": per_tenant * args.tenants, "tenants": args.tenants, "dim": DIM}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteVecStore(Path(tmp) / "vectors.db")
        started = time.perf_counter()
        for tenant in tenants:
            for start in range(0, per_tenant, 1000):
                n = min(1000, per_tenant - start)
                vectors = rng.standard_normal((n, DIM)).astype("float32")
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                words = rng.choice(len(vocab), size=(n, 60), p=weights)
                records = []
                for i in range(n):
                    text = " ".join(vocab[w] for w in words[i])
                    doc = f"doc{(start + i) // 50}"
                    records.append(ChunkRecord(id=chunk_id(doc, start + i), document_id=doc, kb="default",
                                               chunk_index=start + i, title=doc, text=text, section=None, page=None,
                                               vector=vectors[i].tolist(), keyword_text=text))
                store.upsert(tenant, records)
        result["load_s"] = round(time.perf_counter() - started, 1)
        result["db_mb"] = round(sum(f.stat().st_size for f in Path(tmp).glob("vectors.db*")) / 1e6, 1)

        retrieval = Retrieval(embedder=None)  # type: ignore[arg-type]  # vectors are given
        for mode in ("dense", "hybrid"):
            times = []
            for q in range(args.queries):
                handle = TenantStore(store, random.choice(tenants))
                vector = rng.standard_normal(DIM).astype("float32")
                vector /= np.linalg.norm(vector)
                text = " ".join(vocab[w] for w in rng.choice(len(vocab), size=8, p=weights))
                t0 = time.perf_counter()
                hits = retrieval.search_vector(handle, text, vector.tolist(), top_k=5, mode=mode)
                elapsed = (time.perf_counter() - t0) * 1000
                if q >= 10:  # after warm-up
                    times.append(elapsed)
                assert len(hits) == 5 and all(h.id.startswith("doc") for h in hits)
            result[f"{mode}_ms"] = {"p50": round(pct(times, 50), 2), "p99": round(pct(times, 99), 2),
                                    "max": round(max(times), 2)}
        store.close()

    embedder = LocalEmbedder()
    embedder.warm()
    questions = [json.loads(line)["question"] for line in
                 (REPO / "bench/data/retrieval_questions.jsonl").read_text().splitlines() if line.strip()]
    times = []
    for i, q in enumerate(questions):
        t0 = time.perf_counter()
        embedder.embed([q])
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1000)
    result["query_embedding_ms"] = {"p50": round(pct(times, 50), 2), "p99": round(pct(times, 99), 2)}
    out = REPO / "bench/results/knowledge-latency.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
