"""Attacks on a process of one deployment group (ATRIUM_DEPLOYMENT_GROUPS) that name what another group serves.

Asking sales for finance's assistant is a probe of another department (tests/api/test_assistant_probes.py): a 404
like any unknown name, and an audit event operators see. On a process of `default`, finance (group `regulated`) is
not served — but it is still another department of the same tenants.yaml, and the probe must be recorded as it is
on a process that serves every group (it was not: the check looked only at the served tenants).
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.db.models import AuditEvent


@pytest.fixture
def default_group(make_api_client):
    return make_api_client(ATRIUM_DEPLOYMENT_GROUPS="default")


def test_asking_for_another_groups_assistant_is_an_audited_probe(default_group):
    services = default_group.app.state.services
    issued = issue_key(db=services.db, tenant="sales", scopes=["chat"])
    key = {"Authorization": f"Bearer {issued.token}"}
    r = default_group.post("/api/t/sales/chat", headers=key, json={"assistant": "finance-assistant", "message": "hi"})
    assert (r.status_code, r.json()["error"]) == (404, "assistant_not_found")
    r = default_group.post("/api/t/sales/v1/chat/completions", headers=key,
                           json={"model": "finance-assistant", "messages": [{"role": "user", "content": "hi"}]})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    assert default_group.get("/api/t/sales/v1/models/finance-assistant", headers=key).status_code == 404

    with services.db.session() as s:
        probes = list(s.exec(select(AuditEvent).where(AuditEvent.reason == "other_tenants_assistant")))
    assert [(p.tenant, p.route, p.detail["assistant"], p.count) for p in probes] == [
        ("sales", "chat:assistant", "finance-assistant", 1), ("sales", "openai:model", "finance-assistant", 2)]
