"""Knowledge-base documents, their uploaded bytes and ingestion job state.

Tenant-facing functions take `tenant` (from a Principal) and filter on it. The ingestion worker's queue
functions (`claim_next_job`, `jobs_to_resume`) are the only cross-tenant reads: a job carries the tenant
it was created for, and the worker only ever writes into that tenant's namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Interval, and_, case, func, literal, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import ScalarSelect
from sqlmodel import Session, col, select

from backend.db.models import KbBlob, KbDocument, KbEmbeddingModel, utcnow

ACTIVE = ("queued", "parsing", "embedding")
LIVE = ("queued", "parsing", "embedding", "ready")  # a document that exists for users


def create_document(*, session: Session, doc: KbDocument, data: bytes) -> KbDocument:
    session.add(doc)
    session.add(KbBlob(document_id=doc.id, data=data))
    session.commit()
    session.refresh(doc)
    return doc


def get_document(*, session: Session, tenant: str, document_id: str) -> KbDocument | None:
    doc = session.get(KbDocument, document_id)
    return doc if doc is not None and doc.tenant == tenant else None


def document_tenant(*, session: Session, document_id: str) -> str | None:
    """Which tenant owns an id (for auditing a cross-tenant guess; never to return the document)."""
    doc = session.get(KbDocument, document_id)
    return doc.tenant if doc is not None else None


def list_documents(*, session: Session, tenant: str, kb: str | None = None, status: str | None = None,
                   limit: int = 100, offset: int = 0) -> list[KbDocument]:
    stmt = select(KbDocument).where(KbDocument.tenant == tenant, KbDocument.status != "deleting")
    if kb is not None:
        stmt = stmt.where(KbDocument.kb == kb)
    if status is not None:
        stmt = stmt.where(KbDocument.status == status)
    stmt = stmt.order_by(col(KbDocument.created_at).desc(), col(KbDocument.id)).offset(offset).limit(limit)
    return list(session.exec(stmt))


def count_documents(*, session: Session, tenant: str, statuses: tuple[str, ...] = LIVE) -> int:
    stmt = select(func.count()).select_from(KbDocument).where(
        KbDocument.tenant == tenant, col(KbDocument.status).in_(statuses))
    return int(session.exec(stmt).one())


def kb_names(*, session: Session, tenant: str) -> list[str]:
    stmt = select(KbDocument.kb).where(KbDocument.tenant == tenant, KbDocument.status != "deleting").distinct()
    return sorted(session.exec(stmt))


def find_by_hash(*, session: Session, tenant: str, kb: str, content_hash: str) -> KbDocument | None:
    stmt = select(KbDocument).where(KbDocument.tenant == tenant, KbDocument.kb == kb,
                                    KbDocument.content_hash == content_hash, KbDocument.status != "deleting")
    return session.exec(stmt.order_by(col(KbDocument.created_at).desc())).first()


def find_by_filename(*, session: Session, tenant: str, kb: str, filename: str,
                     exclude: str | None = None) -> list[KbDocument]:
    """Earlier versions of a document (same file name in the same knowledge base)."""
    stmt = select(KbDocument).where(KbDocument.tenant == tenant, KbDocument.kb == kb,
                                    KbDocument.filename == filename, col(KbDocument.status).in_(LIVE + ("failed",)))
    if exclude is not None:
        stmt = stmt.where(KbDocument.id != exclude)
    return list(session.exec(stmt))


def find_by_title(*, session: Session, tenant: str, kb: str, title: str,
                  exclude: str | None = None) -> list[KbDocument]:
    stmt = select(KbDocument).where(KbDocument.tenant == tenant, KbDocument.kb == kb, KbDocument.title == title,
                                    col(KbDocument.status).in_(LIVE + ("failed",)))
    if exclude is not None:
        stmt = stmt.where(KbDocument.id != exclude)
    return list(session.exec(stmt))


def get_blob(*, session: Session, tenant: str, document_id: str) -> bytes | None:
    if get_document(session=session, tenant=tenant, document_id=document_id) is None:
        return None
    blob = session.get(KbBlob, document_id)
    return blob.data if blob is not None else None


def save_document(*, session: Session, doc: KbDocument) -> KbDocument:
    doc.updated_at = utcnow()
    session.add(doc)
    session.commit()
    session.refresh(doc)
    return doc


def requeue_documents(*, session: Session, tenant: str, statuses: tuple[str, ...] = ("ready", "failed"),
                      document_ids: Collection[str] | None = None) -> list[KbDocument]:
    """Queue a tenant's documents (all in `statuses`, or only those of `document_ids` among them) to be parsed,
    chunked and embedded again from their stored bytes. Their chunk count stays, so the worker replaces the old
    chunks (and removes them first if the count changes)."""
    query = select(KbDocument).where(KbDocument.tenant == tenant, col(KbDocument.status).in_(statuses))
    if document_ids is not None:
        query = query.where(col(KbDocument.id).in_(list(document_ids)))
    docs = list(session.exec(query))
    for doc in docs:
        doc.status, doc.chunks_done, doc.progress, doc.attempts, doc.error = "queued", 0, 0.0, 0, None
        doc.claimed_by, doc.lease_until, doc.updated_at = None, None, utcnow()
        session.add(doc)
    session.commit()
    for doc in docs:
        session.refresh(doc)
    return docs


def remove_document(*, session: Session, tenant: str, document_id: str) -> bool:
    """Delete the row and its bytes (call after its vectors are gone)."""
    doc = get_document(session=session, tenant=tenant, document_id=document_id)
    if doc is None:
        return False
    blob = session.get(KbBlob, document_id)
    if blob is not None:
        session.delete(blob)
    session.delete(doc)
    session.commit()
    return True


# -- the worker's queue ------------------------------------------------------------------------------------


def claim_next_job(*, session: Session, worker_id: str, lease_s: float, only: set[str] | None = None,
                   tenants: Collection[str] | None = None,
                   cap: Callable[[str], int | None] | None = None) -> KbDocument | None:
    """Atomically take the next job: round-robin between tenants, then the tenant's oldest job. On PostgreSQL the
    job's row is locked `FOR UPDATE SKIP LOCKED`, so N workers (processes, pods) each take a different job without
    waiting on each other; SQLite has one writer at a time, which serialises the same statement. The lease is
    computed by the database's clock, so workers whose clocks disagree still agree on who holds a job.

    Whose turn: the tenant with the fewest jobs running now (any worker), then the one claimed least recently,
    then the one whose oldest job is oldest — so a 10,000-document upload queued first does not make another
    tenant's one document wait behind all of it. The tenant is picked by one query and its oldest job locked by
    another (PostgreSQL refuses FOR UPDATE beside GROUP BY or aggregates); a job taken meanwhile by another worker
    is skipped and the next tenant in turn tried.
    `tenants`: only jobs of these tenants (a worker of some deployment groups); None: any tenant's.
    `cap`: a tenant's most jobs running at once, across every worker (tenants.yaml `limits.ingestion_jobs`; None:
    no cap): a tenant at its cap is skipped, so its backlog leaves the other workers to the other tenants. Two
    workers claiming at the same instant may both see the tenant below its cap (one job over it, until one ends)."""
    now = _db_now(session)
    claimable = and_(col(KbDocument.status).in_(ACTIVE + ("deleting",)),
                     or_(col(KbDocument.lease_until).is_(None), col(KbDocument.lease_until) < now))
    if only is not None:
        claimable = and_(claimable, col(KbDocument.id).in_(only))
    if tenants is not None:
        claimable = and_(claimable, col(KbDocument.tenant).in_(list(tenants)))
    for tenant in _tenants_in_turn(session, claimable, now, cap):
        candidate = (select(KbDocument.id).where(claimable, KbDocument.tenant == tenant)
                     .order_by(col(KbDocument.created_at), col(KbDocument.id)).limit(1)
                     .with_for_update(skip_locked=True))
        result = session.execute(
            update(KbDocument).where(col(KbDocument.id) == candidate.scalar_subquery(), claimable)
            .values(claimed_by=worker_id, lease_until=_db_later(session, lease_s), claim_seq=_next_claim(),
                    attempts=KbDocument.attempts + 1)
            .returning(KbDocument.id)
        )
        doc_id = result.scalar_one_or_none()
        session.commit()
        if doc_id is not None:
            return session.get(KbDocument, doc_id, populate_existing=True)
    return None


def _next_claim() -> ScalarSelect:
    """One more than the last claim's number (a counter, not a clock: two claims in one millisecond stay ordered;
    two concurrent workers may draw the same number, which only makes their tenants tie)."""
    seq = aliased(KbDocument)
    return select(func.coalesce(func.max(seq.claim_seq), 0) + 1).scalar_subquery()


def _tenants_in_turn(session: Session, claimable: ColumnElement, now: ColumnElement,
                     cap: Callable[[str], int | None] | None = None) -> list[str]:
    """The tenants with a claimable job and below their cap, in the order they should be served (claim_next_job)."""
    oldest = dict(session.execute(select(KbDocument.tenant, func.min(KbDocument.created_at)).where(claimable)
                                  .group_by(KbDocument.tenant)).tuples().all())
    if len(oldest) <= 1 and cap is None:
        return list(oldest)
    waiting = list(oldest)
    running = dict(session.execute(
        select(KbDocument.tenant, func.count()).where(
            col(KbDocument.tenant).in_(waiting), col(KbDocument.status).in_(ACTIVE + ("deleting",)),
            col(KbDocument.claimed_by).is_not(None), col(KbDocument.lease_until) >= now)
        .group_by(KbDocument.tenant)).tuples().all())
    if cap is not None:
        waiting = [t for t in waiting if (c := cap(t)) is None or running.get(t, 0) < c]
    if len(waiting) <= 1:
        return waiting
    last = dict(session.execute(select(KbDocument.tenant, func.max(KbDocument.claim_seq))
                                .where(col(KbDocument.tenant).in_(waiting)).group_by(KbDocument.tenant))
                .tuples().all())

    def turn(t: str) -> tuple:  # never claimed before any claimed one; tuples differ before None is compared
        claimed = last.get(t)
        return (running.get(t, 0), 0, oldest[t]) if claimed is None else (running.get(t, 0), 1, claimed, oldest[t])

    return sorted(waiting, key=turn)


def renew_lease(*, session: Session, document_id: str, worker_id: str, lease_s: float) -> bool:
    """Extend a held lease (by the database's clock); False when another worker took the job over (then stop
    working on it)."""
    result = session.execute(
        update(KbDocument).where(and_(col(KbDocument.id) == document_id, col(KbDocument.claimed_by) == worker_id))
        .values(lease_until=_db_later(session, lease_s))
    )
    session.commit()
    return result.rowcount == 1


def release_lease(*, session: Session, document_id: str, worker_id: str) -> None:
    session.execute(
        update(KbDocument).where(and_(col(KbDocument.id) == document_id, col(KbDocument.claimed_by) == worker_id))
        .values(lease_until=None, claimed_by=None)
    )
    session.commit()


def hand_back(*, session: Session, document_id: str, worker_id: str) -> bool:
    """A stopping worker gives an unfinished job back, claimable at once, with its checkpoint (`chunks_done`) kept;
    being stopped is not a failed attempt. False when the job was no longer ours."""
    result = session.execute(
        update(KbDocument).where(and_(col(KbDocument.id) == document_id, col(KbDocument.claimed_by) == worker_id))
        .values(lease_until=None, claimed_by=None,
                attempts=case((col(KbDocument.attempts) > 0, KbDocument.attempts - 1), else_=0))
    )
    session.commit()
    return result.rowcount == 1


def defer_job(*, session: Session, document_id: str, worker_id: str, delay_s: float, reason: str) -> None:
    """Give a job back for a later retry: unclaimed, but not claimable before `delay_s` has passed (database clock)."""
    session.execute(
        update(KbDocument).where(and_(col(KbDocument.id) == document_id, col(KbDocument.claimed_by) == worker_id))
        .values(claimed_by=None, lease_until=_db_later(session, delay_s), error=reason[:500])
    )
    session.commit()


def _db_now(session: Session) -> ColumnElement:
    """The database's current time as an SQL expression, comparable with `lease_until` on either dialect."""
    if session.get_bind().dialect.name == "sqlite":
        # The format SQLAlchemy stores DateTime in on SQLite (microseconds), so text comparison orders correctly.
        return func.strftime(_SQLITE_TS, "now")
    # Not now(): that is the time the transaction began, which may be long before this statement.
    return func.statement_timestamp()


def _db_later(session: Session, seconds: float) -> ColumnElement:
    """The database's current time plus `seconds`, as an SQL expression."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime(_SQLITE_TS, "now", f"{float(seconds):+.3f} seconds")
    return func.statement_timestamp() + literal(timedelta(seconds=seconds), Interval())


_SQLITE_TS = "%Y-%m-%d %H:%M:%f000"


def job_backlog(*, session: Session, tenants: Collection[str]) -> dict[str, tuple[int, datetime | None]]:
    """Per tenant: unfinished ingestion jobs (queued, parsing, embedding) and the oldest one's creation time (the
    metrics' queue depth and job age); every tenant named is in the answer, with (0, None) when it has none."""
    out: dict[str, tuple[int, datetime | None]] = {t: (0, None) for t in tenants}
    stmt = (select(KbDocument.tenant, func.count(), func.min(KbDocument.created_at))
            .where(col(KbDocument.status).in_(ACTIVE), col(KbDocument.tenant).in_(list(tenants)))
            .group_by(col(KbDocument.tenant)))
    for tenant, count, oldest in session.execute(stmt):
        out[tenant] = (int(count), oldest)
    return out


def jobs_to_resume(*, session: Session, tenants: Collection[str] | None = None) -> list[KbDocument]:
    """Unfinished jobs and their current lease holder (to reclaim those of dead local processes); `tenants`: only
    theirs (None: every tenant's)."""
    stmt = select(KbDocument).where(col(KbDocument.status).in_(ACTIVE + ("deleting",)))
    if tenants is not None:
        stmt = stmt.where(col(KbDocument.tenant).in_(list(tenants)))
    return list(session.exec(stmt.order_by(col(KbDocument.created_at))))


def expire_lease(*, session: Session, document_id: str, holder: str) -> None:
    session.execute(
        update(KbDocument).where(and_(col(KbDocument.id) == document_id, col(KbDocument.claimed_by) == holder))
        .values(lease_until=None, claimed_by=None)
    )
    session.commit()


# -- embedding model per tenant ------------------------------------------------------------------------------


def get_embedding_model(*, session: Session, tenant: str) -> KbEmbeddingModel | None:
    return session.get(KbEmbeddingModel, tenant)


def set_embedding_model(*, session: Session, tenant: str, model: str, dimension: int) -> KbEmbeddingModel | None:
    """Record the tenant's model unless one is recorded already; returns the recorded one (first wins)."""
    row = session.get(KbEmbeddingModel, tenant)
    if row is None:
        try:
            row = KbEmbeddingModel(tenant=tenant, model=model, dimension=dimension)
            session.add(row)
            session.commit()
        except IntegrityError:  # another worker recorded it at the same moment
            session.rollback()
        row = session.get(KbEmbeddingModel, tenant, populate_existing=True)
    return row


def clear_embedding_model(*, session: Session, tenant: str) -> None:
    row = session.get(KbEmbeddingModel, tenant)
    if row is not None:
        session.delete(row)
        session.commit()


def latest_update(*, session: Session, tenant: str) -> datetime | None:
    stmt = select(func.max(KbDocument.updated_at)).where(KbDocument.tenant == tenant)
    return session.exec(stmt).one()
