"""Knowledge base over HTTP: upload (202 + status), bad files refused per file, search, delete, who may
ingest; and the chat: cited answers with provenance, "I don't know" for another department's question."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from backend.db.models import AuditEvent, ChatTurn, KbDocument
from tests.conftest import REPO

CORPUS = REPO / "demo" / "corpus"


def _files(*paths: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.split("/")[-1], (CORPUS / p).read_bytes(), "text/markdown")) for p in paths]


def wait_ready(client, tenant: str, ids: list[str], **creds) -> list[dict]:
    deadline = time.monotonic() + 180
    while True:
        docs = [client.get(f"/api/t/{tenant}/documents/{i}", **creds).json() for i in ids]
        if all(d["status"] in ("ready", "failed") for d in docs):
            return docs
        assert time.monotonic() < deadline, docs
        time.sleep(0.2)


def test_upload_status_search_delete(api_client, login_as):
    carol = {"cookies": login_as("carol")}  # sales tenant admin
    r = api_client.post("/api/t/sales/documents", files=_files("sales/pricing-rules.md", "sales/sales-playbook.md")
                        + [("files", ("../../etc/passwd", b"root:x:0:0", "text/plain")),
                           ("files", ("empty.md", b"", "text/markdown"))], data={"kb": "default"}, **carol)
    assert r.status_code == 202, r.text
    body = r.json()
    assert [d["filename"] for d in body["documents"]] == ["pricing-rules.md", "sales-playbook.md"]
    assert all(d["status"] == "queued" and d["knowledge_id"] == "sales/default" for d in body["documents"])
    assert {(e["filename"], e["error"]) for e in body["errors"]} == {("../../etc/passwd", "invalid_filename"),
                                                                     ("empty.md", "empty_file")}
    ids = [d["id"] for d in body["documents"]]
    # Metadata that UTF-8 cannot encode is refused before anything is stored (it broke every later read).
    r = api_client.post("/api/t/sales/documents", files={"files": ("fresh.txt", b"fresh text")},
                        data={"metadata": '{"a": "\\ud800"}'}, **carol)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_metadata") and "metadata.a" in r.json()["detail"]
    assert len(api_client.get("/api/t/sales/documents", **carol).json()["documents"]) == len(ids)
    docs = wait_ready(api_client, "sales", ids, **carol)
    assert [d["status"] for d in docs] == ["ready", "ready"] and all(d["progress"] == 1.0 for d in docs)
    assert docs[0]["title"] == "Northwind Cloud Pricing Rules" and docs[0]["chunks"] == docs[0]["chunks_done"] > 0
    listed = api_client.get("/api/t/sales/documents", **carol).json()["documents"]
    assert sorted(d["id"] for d in listed) == sorted(ids)

    alice = {"cookies": login_as("alice")}  # a member may search
    r = api_client.post("/api/t/sales/search", json={"query": "Who must approve a discount of more than 20%?",
                                                     "top_k": 3}, **alice)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and results[0]["document_id"] == ids[0] and 0 < results[0]["score"] <= 1
    assert results[0]["section"].endswith("Discount Approval Thresholds")
    assert any("Project BLUEHERON-7" in x["text"] for x in results)
    r = api_client.post("/api/t/sales/search", json={"query": "discounts", "kb": "defualt"}, **alice)
    assert (r.status_code, r.json()["error"]) == (404, "kb_not_found") and "it has: default" in r.json()["detail"]

    # Another tenant's admin with a sales document id: the same 404 as an unknown id, and an audited denial.
    fiona = {"cookies": login_as("fiona")}  # finance admin
    for method in ("GET", "DELETE"):
        r = api_client.request(method, f"/api/t/finance/documents/{ids[1]}", **fiona)
        assert (r.status_code, r.json()["error"]) == (404, "document_not_found")
    with api_client.app.state.services.db.session() as s:
        denied = list(s.exec(select(AuditEvent).where(AuditEvent.reason == "other_tenants_document")))
    assert [(d.subject, d.tenant, d.route) for d in denied] == [("fiona", "finance", "knowledge:get"),
                                                                 ("fiona", "finance", "knowledge:delete")]
    assert api_client.get("/api/t/finance/documents/nonexistent", **fiona).status_code == 404
    # ... which finance's own audit view does not show: it would tell fiona the id exists elsewhere.
    seen = api_client.get("/api/t/finance/audit", **fiona).json()
    assert not [e for e in seen if e["reason"] == "other_tenants_document" or ids[1] in str(e["detail"])]
    assert [e for e in api_client.get("/api/admin/audit", cookies=login_as("root")).json()
            if e["reason"] == "other_tenants_document"]  # operators see the probe
    assert api_client.get(f"/api/t/sales/documents/{ids[1]}", **carol).json()["status"] == "ready"

    r = api_client.delete(f"/api/t/sales/documents/{ids[0]}", **alice)
    assert (r.status_code, r.json()["error"]) == (403, "missing_role")
    r = api_client.delete(f"/api/t/sales/documents/{ids[0]}", **carol)
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert api_client.get(f"/api/t/sales/documents/{ids[0]}", **carol).status_code == 404
    with api_client.app.state.services.db.session() as s:  # the knowledge service records it, not the router
        deleted = list(s.exec(select(AuditEvent).where(AuditEvent.kind == "document_deleted")))
    assert [(d.subject, d.tenant, d.route, d.detail) for d in deleted] == [
        ("carol", "sales", f"/api/t/sales/documents/{ids[0]}", {"document_id": ids[0]})]
    r = api_client.post("/api/t/sales/search", json={"query": "Project BLUEHERON-7 pricing exceptions committee"},
                        **alice)
    assert all(x["document_id"] != ids[0] for x in r.json()["results"])


def test_a_batch_of_only_bad_files_is_a_clear_4xx(make_api_client, login_as):
    client = make_api_client(ATRIUM_MAX_UPLOAD_MB="0.001")
    carol = {"cookies": login_as("carol")}
    r = client.post("/api/t/sales/documents", files=[("files", ("big.md", b"# Big\n\n" + b"word " * 400,
                                                                "text/markdown"))], **carol)
    assert r.status_code == 413 and r.json()["error"] == "file_too_large"
    assert r.json()["detail"] == "big.md is larger than the 1.0 KB limit (ATRIUM_MAX_UPLOAD_MB)"
    r = client.post("/api/t/sales/documents", files=[("files", ("x.md", b"\x7fELF\x02\x01" + b"\x00" * 50, "a/b"))],
                    **carol)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_type"
    r = client.post("/api/t/sales/documents", files=[("files", ("a.md", b"", "text/plain")),
                                                     ("files", ("b.md", b"\x89PNG\r\n\x1a\n", "text/plain"))], **carol)
    assert r.status_code == 422 and len(r.json()["errors"]) == 2
    r = client.post("/api/t/sales/documents", data={"kb": "default"}, **carol)
    assert r.status_code == 422 and r.json()["error"] == "no_files"
    r = client.post("/api/t/sales/documents", files=_files("sales/pricing-rules.md"), data={"kb": "../etc"}, **carol)
    assert r.status_code == 422 and r.json()["error"] == "invalid_kb"


def test_who_may_ingest(api_client, login_as):
    r = api_client.post("/api/t/sales/documents", files=_files("sales/pricing-rules.md"), cookies=login_as("alice"))
    assert (r.status_code, r.json()["error"]) == (403, "missing_role")
    carol = login_as("carol")
    key = api_client.post("/api/t/sales/keys", json={"name": "loader", "scopes": ["ingest"]}, cookies=carol).json()
    auth = {"headers": {"Authorization": f"Bearer {key['token']}"}}
    r = api_client.post("/api/t/sales/documents", files=_files("sales/pricing-rules.md"), **auth)
    assert r.status_code == 202, r.text
    r = api_client.post("/api/t/sales/search", json={"query": "discount"}, **auth)
    assert (r.status_code, r.json()["error"]) == (403, "missing_scope")


def test_one_document_is_read_again(api_client, login_as):
    """POST /documents/{id}/reindex (the console's per-row button): the tenant's ingest permission, its own
    documents only (another tenant's id is the same audited 404 as elsewhere), not one being read already."""
    carol = {"cookies": login_as("carol")}
    r = api_client.post("/api/t/sales/documents", files=_files("sales/pricing-rules.md", "sales/sales-playbook.md"),
                        **carol)
    first, second = (d["id"] for d in r.json()["documents"])
    wait_ready(api_client, "sales", [first, second], **carol)
    r = api_client.post(f"/api/t/sales/documents/{first}/reindex", **carol)
    assert r.status_code == 202 and r.json()["id"] == first and r.json()["status"] in ("queued", "processing",
                                                                                       "ready")
    [doc] = wait_ready(api_client, "sales", [first], **carol)
    assert doc["status"] == "ready" and doc["chunks"] == doc["chunks_done"] > 0
    with api_client.app.state.services.db.session() as s:
        events = list(s.exec(select(AuditEvent).where(AuditEvent.kind == "documents_reindexed")))
    assert [(e.subject, e.tenant, e.route, e.detail) for e in events] == [
        ("carol", "sales", f"/api/t/sales/documents/{first}/reindex", {"documents": 1, "document_id": first})]

    r = api_client.post(f"/api/t/sales/documents/{first}/reindex", cookies=login_as("alice"))
    assert (r.status_code, r.json()["error"]) == (403, "missing_role")
    r = api_client.post(f"/api/t/finance/documents/{first}/reindex", cookies=login_as("fiona"))
    assert (r.status_code, r.json()["error"]) == (404, "document_not_found")
    with api_client.app.state.services.db.session() as s:
        denied = list(s.exec(select(AuditEvent).where(AuditEvent.reason == "other_tenants_document")))
    assert [(d.subject, d.tenant, d.route) for d in denied] == [("fiona", "finance", "knowledge:reindex")]
    assert api_client.post("/api/t/sales/documents/nonexistent/reindex", **carol).status_code == 404

    # A document a worker holds is not queued under it: 409, and it stays as it was.
    with api_client.app.state.services.db.session() as s:
        held = s.get(KbDocument, second)
        held.status, held.claimed_by = "processing", "another-worker"
        held.lease_until = datetime.now(UTC) + timedelta(hours=1)
        s.add(held)
        s.commit()
    r = api_client.post(f"/api/t/sales/documents/{second}/reindex", **carol)
    assert (r.status_code, r.json()["error"]) == (409, "document_busy") and "sales-playbook.md" in r.json()["detail"]
    assert api_client.get(f"/api/t/sales/documents/{second}", **carol).json()["status"] == "processing"


def test_chat_cites_sources_and_says_it_does_not_know(api_client, login_as, api_services):
    carol = {"cookies": login_as("carol")}
    r = api_client.post("/api/t/sales/documents", files=_files("sales/pricing-rules.md", "sales/sales-playbook.md",
                                                               "sales/objection-handling.md"), **carol)
    wait_ready(api_client, "sales", [d["id"] for d in r.json()["documents"]], **carol)
    alice = {"cookies": login_as("alice")}
    r = api_client.post("/api/t/sales/chat", json={"assistant": "sales-assistant",
                                                   "message": "Who must approve a discount of more than 20%?"},
                        **alice)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["citations"], answer
    top = answer["citations"][0]
    assert top["title"] == "Northwind Cloud Pricing Rules" and "VP of Sales" in top["quote"]
    assert top["section"] and top["score"] >= api_services.knowledge.min_score
    with api_services.db.session() as session:
        turn = session.exec(select(ChatTurn).where(ChatTurn.id == answer["turn_id"])).one()
    assert turn.chunk_ids == [c["chunk_id"] for c in answer["citations"]] and turn.model

    # Finance's question asked in Sales: nothing relevant, so no model call and a fixed answer.
    r = api_client.post("/api/t/sales/chat", json={"assistant": "sales-assistant",
                                                   "message": "What's the daily meal allowance in San Francisco?"},
                        **alice)
    answer = r.json()
    assert answer["answer"].startswith("I don't know — nothing in the Sales knowledge base covers this")
    assert answer["citations"] == [] and answer["prompt_tokens"] == 0
    with api_services.db.session() as session:
        turn = session.exec(select(ChatTurn).where(ChatTurn.id == answer["turn_id"])).one()
    assert turn.chunk_ids == [] and not turn.model and turn.outcome == "ok"


def test_damaged_and_unsupported_files_are_named(api_client, login_as):
    from tests.knowledge.files import random_bytes

    carol = {"cookies": login_as("carol")}
    for name, code in (("corrupt.pdf", "corrupt_pdf"), ("corrupt.docx", "corrupt_docx")):
        r = api_client.post("/api/t/sales/documents", files=[("files", (name, random_bytes(), "application/pdf"))],
                            **carol)
        assert (r.status_code, r.json()["error"]) == (422, code), r.text
        assert r.json()["detail"].startswith(f"{name} is not a readable ") and "export it again" in r.json()["detail"]
    r = api_client.post("/api/t/sales/documents", files=[("files", ("tool.exe", b"echo hi\n", "text/plain"))],
                        **carol)
    assert (r.status_code, r.json()["error"]) == (415, "unsupported_type") and ".exe" in r.json()["detail"]


def test_an_unknown_knowledge_base_is_a_404_and_a_bad_name_is_quoted_as_sent(api_client, login_as):
    carol = {"cookies": login_as("carol")}
    r = api_client.get("/api/t/sales/documents", params={"kb": "Bad KB"}, **carol)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_kb") and "'Bad KB'" in r.json()["detail"]
    r = api_client.get("/api/t/sales/documents", params={"kb": "nosuch"}, **carol)
    assert (r.status_code, r.json()["error"]) == (404, "kb_not_found") and "none yet" in r.json()["detail"]
    r = api_client.post("/api/t/sales/documents", files=_files("sales/pricing-rules.md"), data={"kb": "pricing"},
                        **carol)
    assert r.status_code == 202, r.text
    # The same answer as POST /search for a knowledge base the tenant does not have.
    for r in (api_client.get("/api/t/sales/documents", params={"kb": "nosuch"}, **carol),
              api_client.post("/api/t/sales/search", json={"query": "discounts", "kb": "nosuch"}, **carol)):
        assert (r.status_code, r.json()["error"]) == (404, "kb_not_found")
        assert r.json()["detail"] == "tenant 'sales' has no knowledge base 'nosuch'; it has: pricing"
    listed = api_client.get("/api/t/sales/documents", params={"kb": "pricing"}, **carol).json()["documents"]
    assert [d["filename"] for d in listed] == ["pricing-rules.md"]
