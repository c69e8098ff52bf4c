"""Retrieval latency on PostgreSQL + pgvector vs the embedded store, same data in the same run: a tenant-scoped top-5
query with 100k chunks over 20 tenants, dense and hybrid (dense 20 + keyword 20, RRF, cosine of keyword-only hits),
query vector given (embedding excluded). Also the HNSW index's recall against exact search (top-5 of the same
tenant), because the graph is approximate and the embedded store is exact.

Data: random unit 384-d vectors (no structure, the hardest case for an HNSW graph) and Zipf-distributed words,
as bench/retrieval_latency.py. PostgreSQL: pgserver (PostgreSQL 16.2, pgvector 0.6.2, default settings) over a
Unix socket on this machine, or --pgvector-url.

    .venv/bin/python bench/pgvector_latency.py [--chunks 100000] [--tenants 20] [--queries 400] [--pgvector-url URL]
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
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.knowledge.retrieval import Retrieval  # noqa: E402
from backend.knowledge.stores.base import ChunkRecord, TenantStore, chunk_id  # noqa: E402
from backend.knowledge.stores.pgvector import TABLE, PgvectorStore, _vector_literal  # noqa: E402
from backend.knowledge.stores.sqlite_vec import SqliteVecStore  # noqa: E402
from bench.pgvector_server import pgvector_database  # noqa: E402

DIM = 384


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def batches(args, tenants: list[str]):
    """The same chunks for every store (seeded): (tenant, records) in batches of 1,000."""
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(20_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    per_tenant = args.chunks // args.tenants
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
            yield tenant, records


def queries(args, tenants: list[str]) -> list[tuple[str, list[float], str]]:
    rng = np.random.default_rng(11)
    random.seed(11)
    vocab = [f"w{i}" for i in range(20_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    out = []
    for _ in range(args.queries):
        vector = rng.standard_normal(DIM).astype("float32")
        vector /= np.linalg.norm(vector)
        text = " ".join(vocab[w] for w in rng.choice(len(vocab), size=8, p=weights))
        out.append((random.choice(tenants), vector.tolist(), text))
    return out


def measure(store, qs) -> dict:
    retrieval = Retrieval(embedder=None)  # type: ignore[arg-type]  # vectors are given
    result = {}
    for mode in ("dense", "hybrid"):
        times = []
        for i, (tenant, vector, text) in enumerate(qs):
            t0 = time.perf_counter()
            hits = retrieval.search_vector(TenantStore(store, tenant), text, vector, top_k=5, mode=mode)
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= 10:  # after warm-up
                times.append(elapsed)
            assert len(hits) == 5 and all(h.id.startswith("doc") for h in hits)
        result[f"{mode}_ms"] = {"p50": round(pct(times, 50), 2), "p99": round(pct(times, 99), 2),
                                "max": round(max(times), 2)}
    return result


def hnsw_recall(store: PgvectorStore, qs, ef_search: int, k: int = 5) -> dict:
    """The HNSW graph against exact search (sequential scan of the tenant), at one hnsw.ef_search:
    - random queries: share of the exact top-k returned (random 384-d data has no neighbourhoods: every cosine is
      about 0 +- 0.05, so this is the graph's worst case, ordering near-ties);
    - planted queries: a stored chunk's vector plus noise (cosine ~0.8 to it, as a question to its passage): is
      that chunk the top-1?"""
    rng = np.random.default_rng(5)
    found = total = planted_found = 0
    times = []
    for tenant, vector, _ in qs[:100]:
        with store.engine.begin() as conn:
            conn.execute(sa.text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(ef_search)})
            sql = (f"SELECT id FROM {TABLE} WHERE tenant = :t AND dim = {DIM} ORDER BY embedding::vector({DIM}) "
                   f"<=> CAST(:v AS vector({DIM})) LIMIT :k")
            t0 = time.perf_counter()
            approx = {r[0] for r in conn.execute(sa.text(sql), {"t": tenant, "v": _vector_literal(vector), "k": k})}
            times.append((time.perf_counter() - t0) * 1000)
            target, stored = conn.execute(sa.text(f"SELECT id, embedding::text FROM {TABLE} WHERE tenant = :t "
                                                  "ORDER BY random() LIMIT 1"), {"t": tenant}).one()
            near = np.array(json.loads(stored)) + rng.standard_normal(DIM) * 0.75 / np.sqrt(DIM)
            near /= np.linalg.norm(near)
            top = conn.execute(sa.text(sql), {"t": tenant, "v": _vector_literal(near.tolist()), "k": 1}).scalar()
            planted_found += top == target
            conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
            exact = {r[0] for r in conn.execute(sa.text(sql), {"t": tenant, "v": _vector_literal(vector), "k": k})}
        found += len(approx & exact)
        total += len(exact)
    return {"random_recall@5": round(found / total, 3), "planted_top1": round(planted_found / len(qs[:100]), 3),
            "dense_top5_p50_ms": round(pct(times, 50), 2), "dense_top5_p99_ms": round(pct(times, 99), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--pgvector-url", help="admin URL of a PostgreSQL with pgvector (default: start pgserver)")
    args = parser.parse_args()
    tenants = [f"tenant-{i:02d}" for i in range(args.tenants)]
    qs = queries(args, tenants)
    result: dict = {"chunks": args.chunks // args.tenants * args.tenants, "tenants": args.tenants, "dim": DIM}

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteVecStore(Path(tmp) / "vectors.db")
        started = time.perf_counter()
        for tenant, records in batches(args, tenants):
            store.upsert(tenant, records)
        result["sqlite"] = {"load_s": round(time.perf_counter() - started, 1), **measure(store, qs)}
        store.close()
        print(json.dumps(result, indent=2), flush=True)

    with pgvector_database(args.pgvector_url) as url:
        store = PgvectorStore(url)
        started = time.perf_counter()
        for tenant, records in batches(args, tenants):
            store.upsert(tenant, records)  # into the HNSW and GIN indexes as it goes, as ingestion does
        load_s = time.perf_counter() - started
        with store.engine.begin() as conn:
            conn.execute(sa.text(f"ANALYZE {TABLE}"))
            size = conn.execute(sa.text(f"SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                                        f"WHERE inhparent = '{TABLE}'::regclass")).scalar_one()
        result["pgvector"] = {"load_s": round(load_s, 1), "db_mb": round(int(size) / 1e6, 1), **measure(store, qs),
                              "hnsw_vs_exact": {ef: hnsw_recall(store, qs, ef) for ef in (40, 100, 200)}}
        store.close()
    out = REPO / "bench/results/knowledge-latency-pgvector.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
