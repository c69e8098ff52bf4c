"""Asking one department for another department's assistant (REST chat, the OpenAI-compatible route, the model
lookup) is a 404 like any unknown name, and an audit event that operators see — the department's own audit
view does not, since it would confirm the name exists elsewhere. A typo names nothing and leaves no event."""

from __future__ import annotations

from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.db.models import AuditEvent


def test_another_departments_assistant_is_a_404_and_an_operator_visible_probe(api_client, login_as):
    services = api_client.app.state.services
    issued = issue_key(db=services.db, tenant="finance", scopes=["chat"])
    key = {"Authorization": f"Bearer {issued.token}"}
    r = api_client.post("/api/t/finance/chat", headers=key, json={"assistant": "sales-assistant", "message": "hi"})
    assert (r.status_code, r.json()["error"]) == (404, "assistant_not_found")
    r = api_client.post("/api/t/finance/v1/chat/completions", headers=key,
                        json={"model": "deal-desk", "messages": [{"role": "user", "content": "hi"}]})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    assert api_client.get("/api/t/finance/v1/models/eng-assistant", headers=key).status_code == 404
    typo = api_client.post("/api/t/finance/chat", headers=key, json={"assistant": "finance-asistant", "message": "x"})
    assert typo.status_code == 404

    with services.db.session() as s:
        probes = list(s.exec(select(AuditEvent).where(AuditEvent.reason == "other_tenants_assistant")))
    # Repeated refusals of one source, tenant, reason and route are one row with a count (the first one's detail).
    assert [(p.tenant, p.route, p.status, p.detail["assistant"], p.count) for p in probes] == [
        ("finance", "chat:assistant", 404, "sales-assistant", 1), ("finance", "openai:model", 404, "deal-desk", 2)]
    assert {p.subject for p in probes} == {f"key:{issued.key.id}"}
    own = api_client.get("/api/t/finance/audit", cookies=login_as("fiona")).json()
    assert not [e for e in own if e["reason"] == "other_tenants_assistant"]
    ops = api_client.get("/api/admin/audit", cookies=login_as("root")).json()
    assert sum(e["count"] for e in ops if e["reason"] == "other_tenants_assistant") == 3
