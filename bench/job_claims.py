"""How the ingestion queue claims jobs with N concurrent workers (processes), on the machine's PostgreSQL and Redis.

    ATRIUM_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres \\
    ATRIUM_BENCH_REDIS_URL=redis://127.0.0.1:6379/12 .venv/bin/python bench/job_claims.py --jobs 1000

Three ways to take the next job, each with 1, 2 and 4 claiming processes over the same backlog:
- `skip-locked`: repositories/documents.claim_next_job (one UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP
  LOCKED), lease by the database's clock) — what atrium uses;
- `conditional-update`: the previous claim (read 20 candidates, then UPDATE ... WHERE lease expired per candidate;
  a lost race costs a round trip);
- `redis-list`: LMOVE from a pending list to a processing list, the reliable-queue primitive under Redis job
  libraries (rq, Celery's Redis broker): their floor, before any bookkeeping of their own.
Prints claims per second, claims lost to another worker (wasted round trips) and duplicates (must be 0).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import and_, or_, update  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from backend.db.engine import make_engine  # noqa: E402
from backend.db.migrate import upgrade  # noqa: E402
from backend.db.models import KbDocument, utcnow  # noqa: E402
from backend.db.repositories import documents as repo  # noqa: E402


def _old_claim(session: Session, worker_id: str, lease_s: float) -> tuple[str | None, int]:
    """The claim before issue 16 (app clock, conditional UPDATE); returns (job id, races lost)."""
    now = utcnow()
    stmt = select(KbDocument.id).where(
        col(KbDocument.status).in_(repo.ACTIVE),
        or_(col(KbDocument.lease_until).is_(None), col(KbDocument.lease_until) < now))
    lost = 0
    for doc_id in list(session.exec(stmt.order_by(col(KbDocument.created_at)).limit(20))):
        result = session.execute(
            update(KbDocument).where(and_(col(KbDocument.id) == doc_id, or_(col(KbDocument.lease_until).is_(None),
                                                                          col(KbDocument.lease_until) < now)))
            .values(claimed_by=worker_id, lease_until=now + timedelta(seconds=lease_s),
                    attempts=KbDocument.attempts + 1))
        session.commit()
        if result.rowcount == 1:
            return doc_id, lost
        lost += 1
    return None, lost


def _sql_worker(url: str, method: str, worker_id: str, out: mp.Queue) -> None:
    engine = make_engine(url)
    got: list[str] = []
    lost = 0
    with Session(engine, expire_on_commit=False) as session:
        while True:
            if method == "skip-locked":
                doc = repo.claim_next_job(session=session, worker_id=worker_id, lease_s=600)
                doc_id = doc.id if doc else None
            else:
                doc_id, n = _old_claim(session, worker_id, 600)
                lost += n
            if doc_id is not None:
                got.append(doc_id)
                continue
            left = session.exec(select(KbDocument.id).where(col(KbDocument.claimed_by).is_(None)).limit(1)).first()
            session.commit()
            if left is None:
                break
            lost += 1
    engine.dispose()
    out.put((got, lost))


def _redis_worker(url: str, key: str, worker_id: str, out: mp.Queue) -> None:
    import redis

    client = redis.Redis.from_url(url)
    got = []
    while (job := client.lmove(f"{key}:pending", f"{key}:processing:{worker_id}", "LEFT", "RIGHT")) is not None:
        got.append(job.decode())
    client.close()
    out.put((got, 0))


def _seed_sql(url: str, jobs: int) -> None:
    engine = make_engine(url)
    with Session(engine) as session:
        session.execute(sa.delete(KbDocument))
        for i in range(jobs):
            session.add(KbDocument(id=f"job{i:06d}", tenant="bench", title="t", filename="f", content_type="text",
                                   content_hash=str(i), status="queued"))
        session.commit()
    engine.dispose()


def run(method: str, workers: int, jobs: int, pg_url: str, redis_url: str) -> dict:
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    key = f"atrium-bench:{uuid.uuid4().hex[:8]}"
    if method == "redis-list":
        import redis

        client = redis.Redis.from_url(redis_url)
        client.rpush(f"{key}:pending", *[f"job{i:06d}" for i in range(jobs)])
        target, args = _redis_worker, lambda n: (redis_url, key, f"w{n}", out)
    else:
        _seed_sql(pg_url, jobs)
        target, args = _sql_worker, lambda n: (pg_url, method, f"w{n}", out)
    procs = [ctx.Process(target=target, args=args(n)) for n in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    if method == "redis-list":
        for n in range(workers):
            client.delete(f"{key}:processing:w{n}")
        client.close()
    claimed = [j for got, _ in results for j in got]
    return {"method": method, "workers": workers, "claims_per_s": round(len(claimed) / elapsed),
            "lost_races": sum(lost for _, lost in results), "claimed": len(set(claimed)),
            "duplicates": len(claimed) - len(set(claimed))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    admin = os.environ.get("ATRIUM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("ATRIUM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    name = f"atrium_bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{admin.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(url)
        print("| method | workers | claims/s | lost races | claimed | duplicates |\n|---|---|---|---|---|---|")
        for method in ("skip-locked", "conditional-update", "redis-list"):
            for n in (int(w) for w in args.workers.split(",")):
                r = run(method, n, args.jobs, url, redis_url)
                print(f"| {r['method']} | {r['workers']} | {r['claims_per_s']} | {r['lost_races']} | "
                      f"{r['claimed']}/{args.jobs} | {r['duplicates']} |", flush=True)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


if __name__ == "__main__":
    main()
