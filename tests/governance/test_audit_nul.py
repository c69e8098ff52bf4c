"""A denial whose request carried a NUL character is audited on PostgreSQL too (backend/governance/audit.py).

A URL's `%00` reaches the path, so the route and a tenant taken from it: PostgreSQL's text cannot hold NUL, the
audit row was refused, and the caller got a 500 instead of its 401/403, unrecorded: anyone could probe keys
against `/api/t/%00/...` without a trace in the audit log (and without tripping the repeated-denials alert)."""

from __future__ import annotations

from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.db.models import AuditEvent

COMPLETIONS = "/api/t/{}/v1/chat/completions"
BODY = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}


def test_denials_with_a_nul_in_the_url_are_refused_and_audited_on_postgresql(make_api_client, postgres_url):
    client = make_api_client(DATABASE_URL=postgres_url, ATRIUM_SINGLE_NODE="true", CHAINLIT_AUTH_SECRET="s" * 48,
                             VECTOR_STORE="sqlite", ATRIUM_INGEST_WORKER="false")
    services = client.app.state.services
    key = issue_key(db=services.db, tenant="sales", scopes=["chat", "retrieval"]).token
    auth = {"authorization": f"Bearer {key}", "x-tenant-id": "sales"}
    answers = []
    for _ in range(2):  # the second one dispatched past the router (backend/api/fast_dispatch.py)
        answers.append(client.post(COMPLETIONS.format("sales%00"), headers=auth, json=BODY))
        answers.append(client.post(COMPLETIONS.format("%00"), json=BODY))  # nobody: the 401
    answers.append(client.get("/api/t/sales%00/documents", headers=auth))  # a route FastAPI serves
    errors = [r.json()["error"] for r in answers]  # OpenAI's shape on /v1, Atrium's elsewhere
    statuses = [(r.status_code, e["code"] if isinstance(e, dict) else e) for r, e in zip(answers, errors, strict=True)]
    assert statuses == [(403, "tenant_header_mismatch"), (401, "not_authenticated")] * 2 + [
        (403, "tenant_header_mismatch")], statuses
    with services.db.session() as session:
        denied = [(e.tenant, e.reason, e.count, e.route) for e in session.exec(
            select(AuditEvent).where(AuditEvent.kind == "denied").order_by(AuditEvent.id)).all()]
    assert denied == [
        ("sales\\x00", "tenant_header_mismatch", 2, "/api/t/sales\\x00/v1/chat/completions"),
        ("\\x00", "not_authenticated", 2, "/api/t/\\x00/v1/chat/completions"),
        ("sales\\x00", "tenant_header_mismatch", 1, "/api/t/sales\\x00/documents"),
    ], denied
