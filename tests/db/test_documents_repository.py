"""backend/db/repositories/documents.py: a call made for tenant B never returns, changes or deletes tenant A's
documents, bytes or embedding model, even where both tenants hold a document of the same knowledge base, file
name, title and content."""

from __future__ import annotations

import pytest

from backend.db.models import KbDocument
from backend.db.repositories import documents as repo
from tests.db.tenancy import A, B, assert_all_covered, rows_of

# Not scoped to one tenant, on purpose.
UNSCOPED = {
    "document_tenant": "names the owner of a guessed id, for auditing a cross-tenant attempt (tested: no document)",
    "save_document": "writes the row the caller holds, which it read through get_document(tenant=...)",
    "claim_next_job": "the ingestion worker's queue: a job carries its tenant, the worker writes only there",
    "jobs_to_resume": "the ingestion worker's queue, as above",
    "renew_lease": "a job the worker holds (by document id and worker id)",
    "release_lease": "a job the worker holds (by document id and worker id)",
    "hand_back": "a job the worker holds (by document id and worker id)",
    "defer_job": "a job the worker holds (by document id and worker id)",
    "expire_lease": "a dead worker's job (by document id and holder)",
}


def _doc(tenant: str, name: str, **kw: object) -> KbDocument:
    values: dict = {"id": f"{tenant}-{name}", "tenant": tenant, "kb": "default", "title": "Pricing Policy",
                    "filename": "pricing.pdf", "content_type": "pdf", "content_hash": "same-bytes",
                    "status": "ready", **kw}
    return KbDocument(**values)


@pytest.fixture
def seeded(db):
    """Both tenants: the same document (kb, file name, title, bytes), a failed one, one in a knowledge base of
    their own; A's embedding model; A's newest update is the latest of all."""
    with db.session() as s:
        for tenant in (A, B):
            repo.create_document(session=s, doc=_doc(tenant, "same"), data=f"{tenant} bytes".encode())
            repo.create_document(session=s, doc=_doc(tenant, "failed", status="failed"), data=b"x")
            repo.create_document(session=s, doc=_doc(tenant, "own", kb=f"{tenant}-kb", title=f"{tenant} only",
                                                     filename=f"{tenant}.md", content_hash=f"{tenant}-hash"),
                                 data=b"y")
        repo.set_embedding_model(session=s, tenant=A, model="a-embedder", dimension=384)
        late = repo.get_document(session=s, tenant=A, document_id=f"{A}-own")
        assert late is not None
        repo.save_document(session=s, doc=late)  # A's latest update, after all of B's
    return db


def _ids(docs) -> set[str]:  # noqa: ANN001
    return {d.id for d in docs}


def test_every_function_is_tested_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_create_document(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.create_document(session=s, doc=_doc(B, "new", content_hash=f"{A}-hash"), data=b"new")
    assert rows_of(seeded, A) == before


def test_get_document(seeded):
    with seeded.session() as s:
        assert repo.get_document(session=s, tenant=B, document_id=f"{A}-same") is None
        assert repo.get_document(session=s, tenant=B, document_id=f"{B}-same").tenant == B


def test_document_tenant(seeded):
    with seeded.session() as s:
        assert repo.document_tenant(session=s, document_id=f"{A}-same") == A  # the owner's name, nothing else
        assert repo.document_tenant(session=s, document_id="nobody") is None


def test_list_documents(seeded):
    with seeded.session() as s:
        assert _ids(repo.list_documents(session=s, tenant=B)) == {f"{B}-same", f"{B}-failed", f"{B}-own"}
        assert _ids(repo.list_documents(session=s, tenant=B, kb="default", status="ready")) == {f"{B}-same"}
        assert repo.list_documents(session=s, tenant=B, kb=f"{A}-kb") == []


def test_count_documents(seeded):
    with seeded.session() as s:
        assert repo.count_documents(session=s, tenant=B) == 2  # live: ready, not failed
        assert repo.count_documents(session=s, tenant=B, statuses=("ready", "failed")) == 3


def test_kb_names(seeded):
    with seeded.session() as s:
        assert repo.kb_names(session=s, tenant=B) == ["default", f"{B}-kb"]


def test_find_by_hash(seeded):
    with seeded.session() as s:
        assert repo.find_by_hash(session=s, tenant=B, kb="default", content_hash="same-bytes").tenant == B
        assert repo.find_by_hash(session=s, tenant=B, kb=f"{A}-kb", content_hash=f"{A}-hash") is None


def test_find_by_filename(seeded):
    with seeded.session() as s:
        assert _ids(repo.find_by_filename(session=s, tenant=B, kb="default", filename="pricing.pdf")) == {
            f"{B}-same", f"{B}-failed"}
        assert repo.find_by_filename(session=s, tenant=B, kb=f"{A}-kb", filename=f"{A}.md") == []


def test_find_by_title(seeded):
    with seeded.session() as s:
        assert _ids(repo.find_by_title(session=s, tenant=B, kb="default", title="Pricing Policy",
                                       exclude=f"{B}-failed")) == {f"{B}-same"}
        assert repo.find_by_title(session=s, tenant=B, kb=f"{A}-kb", title=f"{A} only") == []


def test_get_blob(seeded):
    with seeded.session() as s:
        assert repo.get_blob(session=s, tenant=B, document_id=f"{A}-same") is None
        assert repo.get_blob(session=s, tenant=B, document_id=f"{B}-same") == f"{B} bytes".encode()


def test_save_document(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        doc = repo.get_document(session=s, tenant=B, document_id=f"{B}-same")
        doc.status = "failed"
        repo.save_document(session=s, doc=doc)
    assert rows_of(seeded, A) == before


def test_requeue_documents(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert _ids(repo.requeue_documents(session=s, tenant=B)) == {f"{B}-same", f"{B}-failed", f"{B}-own"}
        # One document by id: another tenant's id (the same name) queues nothing of theirs.
        assert repo.requeue_documents(session=s, tenant=B, document_ids=[f"{A}-same", f"{A}-own"]) == []
        repo.save_document(session=s, doc=_mark_ready(s, f"{B}-same"))
        assert _ids(repo.requeue_documents(session=s, tenant=B, statuses=("ready",),
                                           document_ids=[f"{B}-same", f"{A}-same"])) == {f"{B}-same"}
    assert rows_of(seeded, A) == before


def _mark_ready(s, document_id: str) -> KbDocument:  # noqa: ANN001
    doc = repo.get_document(session=s, tenant=B, document_id=document_id)
    assert doc is not None
    doc.status = "ready"
    return doc


def test_remove_document(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.remove_document(session=s, tenant=B, document_id=f"{A}-same") is False
        assert repo.remove_document(session=s, tenant=B, document_id=f"{B}-same") is True
    assert rows_of(seeded, A) == before


def test_get_embedding_model(seeded):
    with seeded.session() as s:
        assert repo.get_embedding_model(session=s, tenant=B) is None


def test_set_embedding_model(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        recorded = repo.set_embedding_model(session=s, tenant=B, model="b-embedder", dimension=768)
        assert (recorded.tenant, recorded.model) == (B, "b-embedder")  # not A's, which came first
    assert rows_of(seeded, A) == before


def test_clear_embedding_model(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.clear_embedding_model(session=s, tenant=B)
    assert rows_of(seeded, A) == before


def test_latest_update(seeded):
    with seeded.session() as s:
        a_latest = repo.latest_update(session=s, tenant=A)
        b_latest = repo.latest_update(session=s, tenant=B)
        b_docs = repo.list_documents(session=s, tenant=B)
    assert b_latest == max(d.updated_at for d in b_docs) < a_latest  # B's own, not A's later one


def test_job_backlog(seeded):
    with seeded.session() as s:
        repo.create_document(session=s, doc=_doc(A, "queued", status="queued", content_hash="q"), data=b"q")
        backlog = repo.job_backlog(session=s, tenants=[B])
    assert set(backlog) == {B} and backlog[B] == (0, None)  # A's queued job is neither counted nor named
