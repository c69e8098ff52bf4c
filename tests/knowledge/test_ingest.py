"""The ingestion pipeline through KnowledgeService, with the real embedder and the embedded store:
idempotent by content, a changed re-upload replaces the old version, deletes remove every vector,
one bad file never fails the batch, mixing embedding models is refused, access is checked."""

from __future__ import annotations

import pytest

from backend.auth.principal import Principal
from backend.db.repositories import documents as repo
from backend.db.repositories.audit import list_events
from backend.errors import Forbidden
from backend.knowledge.service import UploadFile
from tests.knowledge.conftest import admin_of, member_of, wait_documents

POLICY_V1 = b"""# Returns policy

## Window

Customers may return hardware within 30 days. The returns desk is called Project KINGFISHER-9.

## Refunds

Refunds go back to the original card within 5 business days.
"""
POLICY_V2 = POLICY_V1.replace(b"30 days", b"45 days").replace(b"KINGFISHER-9", b"KINGFISHER-10")


def _upload(knowledge, tenant, files, principal=None, **kw):
    principal = principal or admin_of(tenant)
    return knowledge.upload(principal, tenant, [UploadFile(n, d) for n, d in files], **kw)


def test_same_content_is_not_ingested_twice(services):
    kb, admin = services.knowledge, admin_of("sales")
    first = _upload(kb, "sales", [("returns.md", POLICY_V1)])
    (doc,) = wait_documents(kb, admin, "sales", [first["documents"][0]["id"]])
    assert doc["status"] == "ready" and doc["chunks"] >= 2 and doc["title"] == "Returns policy"
    vectors = kb.store.count("sales")
    again = _upload(kb, "sales", [("returns-copy.md", POLICY_V1)])
    assert again["documents"][0]["id"] == doc["id"] and again["documents"][0]["duplicate"] is True
    assert kb.store.count("sales") == vectors == doc["chunks"]
    assert len(kb.list_documents(admin, "sales")) == 1


async def test_changed_reupload_replaces_the_old_version(services):
    kb, admin = services.knowledge, admin_of("sales")
    old = _upload(kb, "sales", [("returns.md", POLICY_V1)])["documents"][0]
    wait_documents(kb, admin, "sales", [old["id"]])
    new = _upload(kb, "sales", [("returns.md", POLICY_V2)])["documents"][0]
    assert new["id"] != old["id"] and new["duplicate"] is False
    (doc,) = wait_documents(kb, admin, "sales", [new["id"]])
    assert doc["status"] == "ready"
    assert [d["id"] for d in kb.list_documents(admin, "sales")] == [new["id"]]
    assert kb.store.count("sales", old["id"]) == 0 and kb.store.count("sales") == doc["chunks"]
    hits = await kb.search(admin, "sales", "Which project runs the returns desk?", top_k=3)
    assert "KINGFISHER-10" in hits[0].text and all("KINGFISHER-9" not in h.text for h in hits)


def test_delete_removes_the_document_and_all_its_vectors(services):
    kb, admin = services.knowledge, admin_of("sales")
    doc = _upload(kb, "sales", [("returns.md", POLICY_V1)])["documents"][0]
    wait_documents(kb, admin, "sales", [doc["id"]])
    assert kb.store.count("sales", doc["id"]) > 0
    assert kb.delete_document(admin, "sales", doc["id"]) == {"id": doc["id"], "deleted": True, "status": "deleted"}
    assert kb.store.count("sales") == 0 and kb.store.vector_count("sales") == 0
    assert kb.list_documents(admin, "sales") == []
    with services.db.session() as session:
        assert repo.get_blob(session=session, tenant="sales", document_id=doc["id"]) is None


def test_one_bad_file_does_not_fail_the_batch(services):
    kb, admin = services.knowledge, admin_of("sales")
    result = _upload(kb, "sales", [("ok.md", POLICY_V1), ("empty.txt", b""), ("../x.md", POLICY_V2),
                                   ("pic.md", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)])
    assert [d["filename"] for d in result["documents"]] == ["ok.md"]
    assert [(e["filename"], e["error"], e["status"]) for e in result["errors"]] == [
        ("empty.txt", "empty_file", 422), ("../x.md", "invalid_filename", 422), ("pic.md", "unsupported_type", 415)]
    (doc,) = wait_documents(kb, admin, "sales", [result["documents"][0]["id"]])
    assert doc["status"] == "ready"


def test_mixing_embedding_models_is_refused(services):
    kb, admin = services.knowledge, admin_of("finance")
    with services.db.session() as session:
        repo.set_embedding_model(session=session, tenant="finance", model="openai/text-embedding-3-small",
                                 dimension=1536)
    doc = _upload(kb, "finance", [("returns.md", POLICY_V1)])["documents"][0]
    (doc,) = wait_documents(kb, admin, "finance", [doc["id"]])
    assert doc["status"] == "failed" and "cannot be mixed" in doc["error"]
    assert kb.store.count("finance") == 0


async def test_access_is_checked_and_denials_audited(services):
    kb = services.knowledge
    with pytest.raises(Forbidden) as info:
        _upload(kb, "sales", [("a.md", POLICY_V1)], principal=member_of("sales"))
    assert info.value.code == "missing_role"
    with pytest.raises(Forbidden):
        kb.store_for(member_of("engineering"), "sales")
    with pytest.raises(Forbidden):
        await kb.search(admin_of("engineering"), "sales", "returns")
    key = Principal(subject="key:k1", name="k", tenants={"sales": frozenset({"member"})}, auth="api_key",
                    scopes=frozenset({"ingest"}))
    assert _upload(kb, "sales", [("a.md", POLICY_V1)], principal=key)["documents"]
    with pytest.raises(Forbidden) as info:
        await kb.search(key, "sales", "returns")  # ingest scope only: no reading
    assert info.value.code == "missing_scope"
    with services.db.session() as session:
        denials = list_events(session=session, kind="denied", limit=10)
    assert {(d.tenant, d.reason) for d in denials} >= {("sales", "missing_role"), ("sales", "tenant_mismatch"),
                                                       ("sales", "missing_scope")}


def test_same_explicit_title_replaces_the_old_version(services):
    kb, admin = services.knowledge, admin_of("sales")
    old = _upload(kb, "sales", [("returns-2025.md", POLICY_V1)], title="Returns policy")["documents"][0]
    wait_documents(kb, admin, "sales", [old["id"]])
    new = _upload(kb, "sales", [("returns-2026.md", POLICY_V2)], title="Returns policy")["documents"][0]
    wait_documents(kb, admin, "sales", [new["id"]])
    assert [d["id"] for d in kb.list_documents(admin, "sales")] == [new["id"]]
    # Two different files whose own first heading is the same are two documents, not versions.
    a = _upload(kb, "sales", [("a.md", b"# Overview\n\nAlpha text about returns.")])["documents"][0]
    b = _upload(kb, "sales", [("b.md", b"# Overview\n\nBeta text about invoices.")])["documents"][0]
    wait_documents(kb, admin, "sales", [a["id"], b["id"]])
    assert {d["id"] for d in kb.list_documents(admin, "sales")} == {new["id"], a["id"], b["id"]}


def test_a_store_outage_is_retried_then_the_job_completes(make_settings, pinecone):
    import time

    from backend.container import build_services

    pinecone.fail_next = 10**6  # an outage: every upsert gets a 503 (the SDK's own retries give up)
    services = build_services(make_settings(VECTOR_STORE="pinecone", PINECONE_API_KEY=pinecone.api_key,
                                            PINECONE_INDEX_HOST=pinecone.host))
    try:
        kb, admin = services.knowledge, admin_of("sales")
        doc_id = _upload(kb, "sales", [("returns.md", POLICY_V1)])["documents"][0]["id"]
        deadline = time.monotonic() + 120
        while not (kb.get_document(admin, "sales", doc_id)["error"] or "").startswith("retrying after: Pinecone"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        doc = kb.get_document(admin, "sales", doc_id)
        assert doc["status"] == "embedding"  # still in the queue, the reason visible, not failed
        pinecone.fail_next = 0  # the outage ends
        (doc,) = wait_documents(kb, admin, "sales", [doc_id])
        assert doc["status"] == "ready" and doc["error"] is None
        assert len(pinecone.namespaces["sales"]) == doc["chunks"]
        with services.db.session() as session:
            assert repo.get_document(session=session, tenant="sales", document_id=doc_id).attempts == 2
    finally:
        services.close()


def test_deleting_a_document_while_it_is_embedded_leaves_no_vector(make_settings):
    import time

    from backend.container import build_services
    from tests.knowledge.test_crash_resume import _big_document

    services = build_services(make_settings(ATRIUM_EMBED_BATCH="2"))
    try:
        kb, admin = services.knowledge, admin_of("sales")
        doc_id = _upload(kb, "sales", [("manual.md", _big_document())])["documents"][0]["id"]
        deadline = time.monotonic() + 120
        while kb.get_document(admin, "sales", doc_id)["chunks_done"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        result = kb.delete_document(admin, "sales", doc_id)  # the worker lets go at its next checkpoint
        deadline = time.monotonic() + 60
        while kb.list_documents(admin, "sales") or kb.store.count("sales"):
            assert time.monotonic() < deadline, result
            time.sleep(0.1)
        assert result["deleted"] is True and kb.store.vector_count("sales") == 0
    finally:
        services.close()


def _taken_over_mid_batch(make_settings, *, fail: bool):
    """A worker whose batch outlives its lease: meanwhile another worker claims the job and writes chunk 0. Then
    the first worker's batch fails (for good: its last attempt) or succeeds."""
    from backend.container import build_services
    from backend.db.models import KbDocument
    from backend.knowledge.ingest import MAX_ATTEMPTS
    from backend.knowledge.stores.base import ChunkRecord, chunk_id
    from tests.knowledge.test_crash_resume import _big_document

    services = build_services(make_settings(ATRIUM_INGEST_WORKER="false", ATRIUM_EMBED_BATCH="2"))
    kb = services.knowledge
    doc_id = _upload(kb, "sales", [("manual.md", _big_document())])["documents"][0]["id"]
    with services.db.session() as session:
        row = session.get(KbDocument, doc_id)
        row.attempts = MAX_ATTEMPTS - 1  # this claim is its last attempt: a failure is final
        session.add(row)
        session.commit()
    embed = kb.worker.embedder.embed

    def slow_batch(texts):  # noqa: ANN001, ANN202
        vectors = embed(texts)
        with services.db.session() as session:  # the lease ran out; worker B claimed the job and wrote chunk 0
            row = session.get(KbDocument, doc_id)
            row.claimed_by = "worker-b"
            session.add(row)
            session.commit()
        kb.store.upsert("sales", [ChunkRecord(id=chunk_id(doc_id, 0), document_id=doc_id, kb="default",
                                              chunk_index=0, title="t", text="B's chunk", section=None, page=None,
                                              vector=vectors[0], keyword_text="B's chunk")])
        if fail:
            raise RuntimeError("the provider timed out")
        return vectors

    kb.worker.embedder.embed = slow_batch
    kb.worker.run_once(only={doc_id})
    with services.db.session() as session:
        row = session.get(KbDocument, doc_id)
    return services, row, kb.store.count("sales", doc_id)


@pytest.mark.parametrize("fail", [True, False])
def test_a_worker_that_lost_its_job_leaves_the_new_holders_work_alone(make_settings, fail):
    """Review finding: a worker whose lease expired mid-batch still wrote the document, and on a final failure
    deleted every chunk, including those the worker that took the job over had written, which then went on to
    mark the document ready with chunks missing."""
    services, row, chunks = _taken_over_mid_batch(make_settings, fail=fail)
    try:
        assert row.claimed_by == "worker-b" and row.status == "embedding" and row.error is None
        assert row.chunks_done == 0  # B's checkpoint, not A's
        # A failed: B's chunk is still there. A succeeded: its batch (chunks 0 and 1) was written before it saw the
        # loss, under the ids B writes too: an overwrite with the same passages, never a duplicate.
        assert chunks == (1 if fail else 2)
    finally:
        services.close()
