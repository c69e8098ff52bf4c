"""Members' room: `GET /api/me/usage` shows the caller's own usage and allowance in each of their tenants (nobody
else's numbers); the usage report by user shows each member against their allowance; a tenant admin raises one
member's allowance for the month (audited; applied on the next call: tests/governance/test_member_budgets.py)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from backend.db.models import AuditEvent, ChatTurn
from tests.llm.conftest import NO_QUOTAS
from tests.llm.fakes import make_config_dir, mock, set_tenant


@pytest.fixture
def client(tmp_path, make_api_client, login_as):
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "hi")], quotas=NO_QUOTAS)
    set_tenant(cfg, "sales", quotas={
        "member": {"tokens_per_day": 1000, "monthly_budget_usd": 2.0},
        "member_overrides": [{"name": "admins", "role": "tenant_admin", "monthly_budget_usd": 10.0}]})
    client = make_api_client(ATRIUM_CONFIG_DIR=str(cfg))
    services = client.app.state.services
    with services.db.session() as s:
        for tenant, who, tokens, cost, allowance in [("sales", "alice", 100, 0.5, "default"),
                                                      ("sales", "bob", 700, 1.25, "default"),
                                                      ("sales", "carol", 10, 3.0, "admins"),
                                                      ("finance", "maria", 50, 0.2, None)]:
            s.add(ChatTurn(tenant=tenant, subject=who, prompt_tokens=tokens, cost_usd=cost, allowance=allowance))
        s.commit()
    return client


def test_me_usage_shows_only_the_callers_numbers(client, login_as):
    body = client.get("/api/me/usage", cookies=login_as("alice")).json()
    assert body["subject"] == "alice" and list(body["tenants"]) == ["sales"]
    sales = body["tenants"]["sales"]
    assert sales["today"]["tokens"] == 100 and sales["today"]["limit"] == 1000 and sales["today"]["remaining"] == 900
    assert sales["month"]["cost_usd"] == 0.5 and sales["month"]["limit_usd"] == 2.0
    assert sales["month"]["remaining_usd"] == 1.5 and sales["month"]["resets_at"].endswith("T00:00:00+00:00")
    assert sales["allowance"] == {"source": "default", "raised": False, "limited": True}
    text = client.get("/api/me/usage", cookies=login_as("alice")).text
    assert "bob" not in text and "1.25" not in text and "700" not in text  # another member's numbers never show
    maria = client.get("/api/me/usage", cookies=login_as("maria")).json()["tenants"]
    assert set(maria) == {"sales", "finance"}
    assert maria["finance"]["month"]["cost_usd"] == 0.2 and maria["finance"]["month"]["limit_usd"] is None
    assert maria["sales"]["month"]["cost_usd"] == 0.0  # her own sales usage: none
    carol = client.get("/api/me/usage", cookies=login_as("carol")).json()["tenants"]["sales"]
    assert carol["allowance"]["source"] == "admins" and carol["month"]["limit_usd"] == 10.0
    assert client.get("/api/me/usage").status_code == 401


def test_usage_by_user_carries_each_members_allowance(client, login_as):
    groups = {g["key"]: g for g in client.get("/api/t/sales/usage?group_by=user", cookies=login_as("carol"))
              .json()["groups"]}
    assert groups["bob"]["allowance"]["month"]["remaining_usd"] == 0.75
    assert groups["carol"]["allowance"]["month"]["limit_usd"] == 10.0  # her role's override, from her latest call
    by_day = client.get("/api/t/sales/usage?group_by=day", cookies=login_as("carol")).json()["groups"]
    assert "allowance" not in by_day[0]


def test_a_tenant_admin_raises_one_members_allowance_for_the_month(client, login_as):
    carol = login_as("carol")
    r = client.post("/api/t/sales/usage/allowances", cookies=carol, json={"subject": "alice", "monthly_budget_usd": 5})
    assert r.status_code == 200, r.text
    assert r.json()["granted_by"] == "carol" and r.json()["monthly_budget_usd"] == 5
    mine = client.get("/api/me/usage", cookies=login_as("alice")).json()["tenants"]["sales"]
    assert mine["month"]["limit_usd"] == 5.0 and mine["today"]["limit"] == 1000 and mine["allowance"]["raised"]
    bob = client.get("/api/me/usage", cookies=login_as("bob")).json()["tenants"]["sales"]
    assert bob["month"]["limit_usd"] == 2.0  # only alice's
    services = client.app.state.services
    with services.db.session() as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.kind == "allowance_raised")).one()
    assert (event.subject, event.tenant, event.detail["member"]) == ("carol", "sales", "alice")
    # A member cannot raise their own; a field is required; a tenant without allowances has nothing to raise.
    assert client.post("/api/t/sales/usage/allowances", cookies=login_as("alice"),
                       json={"subject": "alice", "monthly_budget_usd": 99}).status_code == 403
    r = client.post("/api/t/sales/usage/allowances", cookies=carol, json={"subject": "alice"})
    assert r.status_code == 422 and "tokens_per_day" in r.json()["detail"]
    r = client.post("/api/t/finance/usage/allowances", cookies=login_as("fiona"),
                    json={"subject": "frank", "tokens_per_day": 5})
    assert r.status_code == 409 and "quotas.member" in r.json()["detail"]
    assert client.post("/api/t/sales/usage/allowances", cookies=carol,
                       json={"subject": "alice", "monthly_budget_usd": -1}).status_code == 422


def test_an_admin_cannot_raise_their_own_nor_a_non_members_allowance(client, login_as):
    """Attacks on the raise: one's own allowance (the admin's limit would be none), a typo, another tenant's member,
    another tenant's key, a key whose calls count against its owner, NaN and huge values."""
    from backend.auth.api_keys import issue_key

    carol, services = login_as("carol"), client.app.state.services

    def post(body: dict, cookies=carol):
        return client.post("/api/t/sales/usage/allowances", cookies=cookies, json=body)

    r = post({"subject": "carol", "monthly_budget_usd": 1000})
    assert r.status_code == 403 and r.json()["error"] == "own_allowance"
    assert "another tenant admin" in r.json()["detail"]
    with services.db.session() as s:
        denied = s.exec(select(AuditEvent).where(AuditEvent.kind == "denied", AuditEvent.subject == "carol")).all()
    assert [e.detail["reason"] for e in denied] == ["own_allowance"]
    # Through a key of her own (its calls count against her): refused the same.
    key = issue_key(db=services.db, tenant="sales", scopes=["admin"], created_by="carol")
    r = client.post("/api/t/sales/usage/allowances", json={"subject": "carol", "tokens_per_day": 10**9},
                    headers={"Authorization": f"Bearer {key.token}", "X-Tenant-ID": "sales"})
    assert r.status_code == 403, r.text
    assert post({"subject": "alcie", "tokens_per_day": 5}).json()["error"] == "unknown_member"
    assert post({"subject": "maria", "tokens_per_day": 5}).json()["error"] == "unknown_member"  # finance's
    other = issue_key(db=services.db, tenant="finance", scopes=["chat"])
    assert post({"subject": f"key:{other.key.id}", "tokens_per_day": 5}).json()["error"] == "unknown_member"
    r = post({"subject": f"key:{key.key.id}", "tokens_per_day": 5})
    assert r.status_code == 422 and r.json()["error"] == "key_has_owner" and "'carol'" in r.json()["detail"]
    for bad in ("NaN", "Infinity", "1e400", "-0.5"):
        r = client.post("/api/t/sales/usage/allowances", cookies=carol, content=f'{{"subject": "alice", '
                        f'"monthly_budget_usd": {bad}}}', headers={"content-type": "application/json"})
        assert r.status_code == 422, (bad, r.text)
    assert post({"subject": "alice", "tokens_per_day": 10**13}).status_code == 422
    with services.db.session() as s:
        assert not s.exec(select(AuditEvent).where(AuditEvent.kind == "allowance_raised")).all()  # none went through
