"""The ingestion queue serves tenants round-robin (repositories/documents.claim_next_job), on SQLite and PostgreSQL:
a large upload queued first does not make another tenant's document wait behind all of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.db.models import KbDocument
from backend.db.repositories import documents as repo

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _queue(db, tenant: str, n: int, *, start: int = 0, prefix: str | None = None) -> None:
    with db.session() as s:
        for i in range(start, start + n):
            doc_id = f"{prefix or tenant}{i:03d}"
            # Explicit, increasing creation times: the order they were queued in, whatever the clock's resolution.
            s.add(KbDocument(id=doc_id, tenant=tenant, title="t", filename=f"{doc_id}.md", content_type="text",
                             content_hash=doc_id, status="queued", created_at=T0 + timedelta(seconds=i)))
        s.commit()


def _claim_and_finish(db, worker: str = "w1") -> KbDocument | None:
    """One worker's loop step: claim, ingest (here: mark ready), give the lease back."""
    with db.session() as s:
        doc = repo.claim_next_job(session=s, worker_id=worker, lease_s=600)
        if doc is None:
            return None
        doc.status = "ready"
        repo.save_document(session=s, doc=doc)
        repo.release_lease(session=s, document_id=doc.id, worker_id=worker)
        return doc


def test_a_tenant_queued_behind_a_large_upload_is_served_within_two_claims(db):
    _queue(db, "sales", 50)
    _queue(db, "finance", 1, start=60)  # queued after all 50
    claimed = [_claim_and_finish(db).tenant for _ in range(2)]
    assert "finance" in claimed
    assert claimed[0] == "sales"  # the oldest job goes first while nobody has been served yet


def test_tenants_take_turns_and_each_tenants_jobs_stay_in_order(db):
    _queue(db, "sales", 6)
    _queue(db, "engineering", 3, start=10)
    _queue(db, "finance", 2, start=20)
    order = []
    while (doc := _claim_and_finish(db)) is not None:
        order.append(doc.id)
    assert order == ["sales000", "engineering010", "finance020", "sales001", "engineering011", "finance021",
                     "sales002", "engineering012", "sales003", "sales004", "sales005"]


def test_a_tenant_with_a_job_running_waits_for_the_others(db):
    """Several workers: the tenant whose job is running now comes after tenants with none running."""
    _queue(db, "sales", 5)
    _queue(db, "finance", 1, start=10)
    with db.session() as s:
        first = repo.claim_next_job(session=s, worker_id="w1", lease_s=600)  # held, not finished
        second = repo.claim_next_job(session=s, worker_id="w2", lease_s=600)
    assert (first.tenant, second.tenant) == ("sales", "finance")


def test_a_newly_arrived_tenant_goes_before_one_that_was_just_served(db):
    _queue(db, "sales", 5)
    assert _claim_and_finish(db).tenant == "sales"
    _queue(db, "engineering", 1, start=100)  # arrives later than every sales job
    assert _claim_and_finish(db).tenant == "engineering"
    assert _claim_and_finish(db).tenant == "sales"


def test_only_restricts_the_claim_to_the_given_jobs(db):
    """The CLI's `drain(only=…)` path still works with the per-tenant order."""
    _queue(db, "sales", 3)
    _queue(db, "finance", 3, start=10)
    with db.session() as s:
        doc = repo.claim_next_job(session=s, worker_id="w1", lease_s=600, only={"sales002"})
    assert doc is not None and doc.id == "sales002"


def test_a_workers_tenants_filter_comes_before_whose_turn_it_is(db):
    """A worker of some deployment groups takes only their tenants' jobs, in turn among them."""
    _queue(db, "sales", 3)
    _queue(db, "finance", 2, start=10)
    _queue(db, "engineering", 2, start=20)
    with db.session() as s:
        taken = [repo.claim_next_job(session=s, worker_id="w1", lease_s=600, tenants={"finance", "engineering"})
                 for _ in range(4)]
        assert repo.claim_next_job(session=s, worker_id="w1", lease_s=600, tenants={"finance", "engineering"}) is None
    assert [d.id for d in taken] == ["finance010", "engineering020", "finance011", "engineering021"]


def test_a_tenant_at_its_ingestion_cap_leaves_the_other_workers_to_the_others(db):
    """tenants.yaml `limits.ingestion_jobs`: a tenant's jobs running at once over every worker. Its backlog waits
    while it is at the cap, even with workers free and nobody else queued; the others are not held back."""
    caps = {"sales": 1, "finance": None}
    _queue(db, "sales", 5)
    with db.session() as s:
        first = repo.claim_next_job(session=s, worker_id="w1", lease_s=600, cap=caps.get)  # held, not finished
        assert first is not None and first.tenant == "sales"
        assert repo.claim_next_job(session=s, worker_id="w2", lease_s=600, cap=caps.get) is None  # at its cap
    _queue(db, "finance", 3, start=10)
    with db.session() as s:
        taken = [repo.claim_next_job(session=s, worker_id=w, lease_s=600, cap=caps.get) for w in ("w2", "w3", "w4")]
    assert [d.tenant for d in taken if d is not None] == ["finance", "finance", "finance"]  # no cap: all of them
    with db.session() as s:
        repo.release_lease(session=s, document_id=first.id, worker_id="w1")  # sales' job handed back or finished
        again = repo.claim_next_job(session=s, worker_id="w1", lease_s=600, cap=caps.get)
    assert again is not None and again.tenant == "sales"
    with db.session() as s:  # without a cap (a worker built without limits) nothing changes
        assert repo.claim_next_job(session=s, worker_id="w5", lease_s=600).tenant == "sales"
