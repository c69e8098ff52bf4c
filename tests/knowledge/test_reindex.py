"""`atrium reindex`: a knowledge base chunked by an older release (here: smaller chunks) is chunked and embedded
again from the stored files; no old chunk is left, search finds the new ones, other tenants are untouched."""

from __future__ import annotations

import asyncio

from backend.container import build_services
from backend.db.repositories.audit import list_events
from backend.knowledge.cli import reindex
from backend.knowledge.service import UploadFile
from tests.knowledge.conftest import admin_of, wait_documents
from tests.knowledge.test_ingest import POLICY_V1

LONG = POLICY_V1 + b"\n## Exchanges\n\n" + b"An exchange keeps the original order number and ships the same day. " * 12


def test_reindex_rechunks_every_stored_document(make_settings, capsys):
    old = build_services(make_settings(ATRIUM_CHUNK_TOKENS="40", ATRIUM_CHUNK_OVERLAP="8"))
    try:
        ids = {}
        for tenant in ("sales", "finance"):
            up = old.knowledge.upload(admin_of(tenant), tenant, [UploadFile("returns.md", LONG)])
            ids[tenant] = up["documents"][0]["id"]
            (doc,) = wait_documents(old.knowledge, admin_of(tenant), tenant, [ids[tenant]])
            assert doc["status"] == "ready"
        small = old.knowledge.store.count("sales")
    finally:
        old.close()

    new = build_services(make_settings())  # the default 200-token chunks
    try:
        assert reindex(new, tenant="sales") == 0
        assert "sales: 1 document(s) re-indexed: 1 ready" in capsys.readouterr().out
        kb, admin = new.knowledge, admin_of("sales")
        doc = kb.get_document(admin, "sales", ids["sales"])
        assert doc["status"] == "ready" and doc["chunks"] < small
        assert kb.store.count("sales") == kb.store.count("sales", ids["sales"]) == doc["chunks"]  # no leftovers
        assert kb.store.count("finance") == small  # another tenant is not touched
        hits = asyncio.run(kb.search(admin, "sales", "Which project runs the returns desk?", top_k=3))
        assert "KINGFISHER-9" in hits[0].text
        with new.db.session() as session:
            events = list_events(session=session, tenant="sales", kind="documents_reindexed")
        assert [(e.subject, e.detail["documents"]) for e in events] == [("cli", 1)]
        assert reindex(new, tenant="nope") == 2 and "unknown tenant 'nope'" in capsys.readouterr().err
    finally:
        new.close()


def test_reindex_skips_documents_that_failed_when_added(services, capsys):
    from tests.knowledge.files import make_pdf

    kb, admin = services.knowledge, admin_of("sales")
    up = kb.upload(admin, "sales", [UploadFile("returns.md", LONG), UploadFile("scan.pdf", make_pdf([""]))])
    good, scan = wait_documents(kb, admin, "sales", [d["id"] for d in up["documents"]])
    assert (good["status"], scan["status"]) == ("ready", "failed")

    assert reindex(services, tenant="sales") == 0  # the scanned PDF failed before: it does not fail this run
    out = capsys.readouterr()
    assert ("sales: skipped 1 document(s) that failed when added (--include-failed tries them again): scan.pdf "
            "(no text could be extracted (a scanned PDF? run OCR on it first))") in out.out
    assert "sales: 1 document(s) re-indexed: 1 ready" in out.out and "error" not in out.err
    assert kb.get_document(admin, "sales", good["id"])["status"] == "ready"

    assert reindex(services, tenant="sales", include_failed=True) == 0  # tried again; it fails as it did
    out = capsys.readouterr()
    assert "sales: 2 document(s) re-indexed: 1 ready, 1 failed" in out.out and "skipped" not in out.out
    assert "error: scan.pdf: no text could be extracted" in out.err
    assert kb.get_document(admin, "sales", scan["id"])["status"] == "failed"
