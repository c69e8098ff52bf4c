"""Files attached in the chat (KnowledgeService.upload_attachments): tenant admins only — a refusal is audited
and raised before any file is read — then the upload as any other, audited under the chat's route; and the
documents' progress followed (follow_documents) until each is ready or failed, or the time limit."""

from __future__ import annotations

import pytest

from backend.db.repositories.audit import list_events
from backend.errors import Forbidden
from backend.knowledge.service import AttachedFile
from tests.knowledge.conftest import admin_of, member_of

NOTE = b"# Parking\n\nVisitors park on level 2 of the MAGPIE-7 garage; the gate code is at the front desk.\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _events(services, kind: str) -> list:
    with services.db.session() as session:
        return list_events(session=session, kind=kind, limit=20)


async def _follow(kb, principal, tenant: str, docs: list[dict], **kw) -> list[list[dict]]:
    return [progress async for progress in kb.follow_documents(principal, tenant, docs, **kw)]


def test_a_member_is_refused_before_any_file_is_read_and_the_refusal_is_audited(services, tmp_path):
    never_read = AttachedFile(filename="note.md", path=tmp_path / "not-there.md")  # reading it would fail
    with pytest.raises(Forbidden) as info:
        services.knowledge.upload_attachments(member_of("sales"), "sales", [never_read])
    assert info.value.code == "missing_role"
    [denied] = _events(services, "denied")
    assert (denied.subject, denied.tenant, denied.route, denied.reason) == ("member", "sales", "chat:upload",
                                                                            "missing_role")
    assert _events(services, "documents_uploaded") == []
    assert services.knowledge.list_documents(admin_of("sales"), "sales") == []


async def test_an_admins_files_are_uploaded_audited_and_followed_until_ready(services, tmp_path):
    kb, admin = services.knowledge, admin_of("sales")
    (tmp_path / "a").write_bytes(NOTE)
    (tmp_path / "b").write_bytes(PNG)
    result = kb.upload_attachments(admin, "sales", [AttachedFile("parking.md", tmp_path / "a"),
                                                    AttachedFile("photo.md", tmp_path / "b")])
    [doc] = result["documents"]
    [error] = result["errors"]
    assert doc["filename"] == "parking.md" and error["filename"] == "photo.md"
    [uploaded] = _events(services, "documents_uploaded")
    assert (uploaded.route, uploaded.subject, uploaded.detail["accepted"]) == ("chat:upload", "sales-admin",
                                                                               [doc["id"]])

    progress = await _follow(kb, admin, "sales", result["documents"], every_s=0.1, for_s=180)
    assert progress, "the document was queued: its progress is reported"
    assert [d["status"] for d in progress[-1]] == ["ready"] and progress[-1][0]["chunks"] >= 1
    assert all(d["status"] not in ("ready", "failed") for p in progress[:-1] for d in p)
    # Nothing left to follow: nothing is reported.
    assert await _follow(kb, admin, "sales", progress[-1], every_s=0.1) == []


async def test_following_stops_at_the_time_limit_and_reports_a_deleted_document_as_failed(make_settings, tmp_path):
    from backend.container import build_services

    services = build_services(make_settings(ATRIUM_INGEST_WORKER="false"))  # nothing is ingested: stays queued
    try:
        kb, admin = services.knowledge, admin_of("sales")
        (tmp_path / "a").write_bytes(NOTE)
        [doc] = kb.upload_attachments(admin, "sales", [AttachedFile("parking.md", tmp_path / "a")])["documents"]
        progress = await _follow(kb, admin, "sales", [doc], every_s=0.05, for_s=0.3)
        assert 1 <= len(progress) <= 7 and progress[-1][0]["status"] == "queued"

        kb.delete_document(admin, "sales", doc["id"])
        [[gone]] = await _follow(kb, admin, "sales", [doc], every_s=0.05, for_s=5)
        assert (gone["status"], gone["error"]) == ("failed", "deleted while it was being added")
    finally:
        services.close()
