"""The ingestion queue's leases (repositories/documents.py) follow the database's clock, never the app's: with
the app's clock set hours off, a lease still expires, holds and renews by the database's time. And concurrent
claimers each get a different job."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from backend.db.models import KbDocument
from backend.db.repositories import documents as repo


def _doc(doc_id: str, **kw: object) -> KbDocument:
    values: dict = {"tenant": "sales", "title": "t", "filename": f"{doc_id}.md", "content_type": "text",
                    "content_hash": doc_id, "status": "queued", **kw}
    return KbDocument(id=doc_id, **values)


def _db_time(db, offset_s: float = 0) -> datetime:
    """The database's own clock, plus an offset."""
    with db.session() as s:
        if s.get_bind().dialect.name == "sqlite":
            raw = s.execute(sa.text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
            now = datetime.fromisoformat(raw).replace(tzinfo=UTC)
        else:
            now = s.execute(sa.text("SELECT statement_timestamp()")).scalar_one()
    return now + timedelta(seconds=offset_s)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _set_lease(db, doc_id: str, until: datetime, holder: str | None = "gone:1:x") -> None:
    with db.session() as s:
        s.execute(sa.update(KbDocument).where(KbDocument.id == doc_id)
                  .values(lease_until=until, claimed_by=holder))
        s.commit()


@pytest.fixture
def skewed_app_clock(monkeypatch):
    """Set the app's clock (what the repository would use if it used Python's time) `hours` off."""
    def skew(hours: float) -> None:
        monkeypatch.setattr(repo, "utcnow", lambda: datetime.now(UTC) + timedelta(hours=hours))
    return skew


def test_a_claims_lease_is_the_databases_now_plus_the_lease(db, skewed_app_clock):
    skewed_app_clock(+24)
    with db.session() as s:
        repo.create_document(session=s, doc=_doc("d1"), data=b"x")
    before = _db_time(db)
    with db.session() as s:
        doc = repo.claim_next_job(session=s, worker_id="w1", lease_s=60)
    after = _db_time(db)
    assert doc is not None and doc.claimed_by == "w1" and doc.attempts == 1
    lease = _aware(doc.lease_until)
    assert before + timedelta(seconds=60) <= lease <= after + timedelta(seconds=60)
    skewed_app_clock(-24)
    with db.session() as s:
        assert repo.renew_lease(session=s, document_id="d1", worker_id="w1", lease_s=600)
        renewed = _aware(s.get(KbDocument, "d1", populate_existing=True).lease_until)
    assert after + timedelta(seconds=600) <= renewed <= _db_time(db, 600)


def test_an_expired_lease_is_taken_even_when_the_apps_clock_says_it_is_not(db, skewed_app_clock):
    with db.session() as s:
        repo.create_document(session=s, doc=_doc("d1"), data=b"x")
    _set_lease(db, "d1", _db_time(db, -1))  # expired a second ago, by the database's clock
    skewed_app_clock(-1)  # the app thinks it is an hour earlier: by its clock the lease runs for another hour
    with db.session() as s:
        doc = repo.claim_next_job(session=s, worker_id="w2", lease_s=60)
    assert doc is not None and doc.id == "d1" and doc.claimed_by == "w2"


def test_a_live_lease_holds_even_when_the_apps_clock_says_it_expired(db, skewed_app_clock):
    with db.session() as s:
        repo.create_document(session=s, doc=_doc("d1"), data=b"x")
    _set_lease(db, "d1", _db_time(db, 3600))  # held for an hour more, by the database's clock
    skewed_app_clock(+2)  # the app thinks it is two hours later
    with db.session() as s:
        assert repo.claim_next_job(session=s, worker_id="w2", lease_s=60) is None
        row = s.get(KbDocument, "d1", populate_existing=True)
    assert row.claimed_by == "gone:1:x"


def test_a_deferred_job_waits_by_the_databases_clock(db, skewed_app_clock):
    with db.session() as s:
        repo.create_document(session=s, doc=_doc("d1"), data=b"x")
        assert repo.claim_next_job(session=s, worker_id="w1", lease_s=60) is not None
    skewed_app_clock(+24)
    before = _db_time(db)
    with db.session() as s:
        repo.defer_job(session=s, document_id="d1", worker_id="w1", delay_s=300, reason="retrying after: outage")
        row = s.get(KbDocument, "d1", populate_existing=True)
    assert row.claimed_by is None and before + timedelta(seconds=300) <= _aware(row.lease_until) \
        <= _db_time(db, 300)
    with db.session() as s:
        assert repo.claim_next_job(session=s, worker_id="w2", lease_s=60) is None


def test_hand_back_makes_the_job_claimable_at_once_without_counting_an_attempt(db):
    with db.session() as s:
        repo.create_document(session=s, doc=_doc("d1", chunks_done=8, chunk_total=20, status="embedding"), data=b"x")
        assert repo.claim_next_job(session=s, worker_id="w1", lease_s=600).attempts == 1
        assert not repo.hand_back(session=s, document_id="d1", worker_id="someone-else")
        assert repo.hand_back(session=s, document_id="d1", worker_id="w1")
        doc = repo.claim_next_job(session=s, worker_id="w2", lease_s=600)
    assert doc is not None and doc.claimed_by == "w2" and doc.attempts == 1 and doc.chunks_done == 8


def test_concurrent_claimers_each_get_a_different_job(db):
    jobs, claimers = 24, 6
    with db.session() as s:
        for i in range(jobs):
            repo.create_document(session=s, doc=_doc(f"d{i:02d}"), data=b"x")
    got: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(claimers)

    def claim(n: int) -> None:
        start.wait()
        for _ in range(jobs):  # bounded; ends as soon as no job is left unclaimed
            with db.session() as s:
                doc = repo.claim_next_job(session=s, worker_id=f"w{n}", lease_s=600)
                if doc is None and not s.exec(sa.select(KbDocument.id).where(
                        KbDocument.claimed_by.is_(None))).first():
                    return
            if doc is not None:
                with lock:
                    got.append(doc.id)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [f"d{i:02d}" for i in range(jobs)]  # every job once: none twice, none left out
