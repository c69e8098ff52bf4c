"""GET /api/t/{tenant}/usage: tenant admins only; totals by day, model, user and assistant; tenant-scoped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.auth.api_keys import issue_key
from backend.db.models import ChatTurn


@pytest.fixture
def turns(api_services):
    rows = [
        ("sales", "alice", "sales-assistant", "anthropic/claude-sonnet-5-5", datetime(2026, 11, 2, 10, tzinfo=UTC),
         100, 20, 0.0006, False, "ok"),
        ("sales", "bob", "sales-assistant", "anthropic/claude-haiku-5-5", datetime(2026, 11, 2, 11, tzinfo=UTC),
         50, 10, 0.0001, False, "ok"),
        ("sales", "alice", "deal-desk", "anthropic/claude-haiku-5-5", datetime(2026, 11, 3, 9, tzinfo=UTC),
         0, 0, 0.0, True, "ok"),
        ("sales", "alice", "deal-desk", None, datetime(2026, 11, 3, 9, tzinfo=UTC), 0, 0, 0.0, False, "quota"),
        ("sales", "alice", "sales-assistant", "local/smollm2", datetime(2026, 10, 30, 9, tzinfo=UTC),
         70, 30, 0.0, False, "ok"),  # outside the range below
        ("engineering", "dave", "eng-assistant", "anthropic/claude-sonnet-5-5",
         datetime(2026, 11, 2, 10, tzinfo=UTC), 999, 999, 9.0, False, "ok"),  # another tenant
    ]
    with api_services.db.session() as s:
        for tenant, who, assistant, model, when, pt, ct, cost, cached, outcome in rows:
            s.add(ChatTurn(tenant=tenant, subject=who, assistant=assistant, model=model, created_at=when,
                           prompt_tokens=pt, completion_tokens=ct, cost_usd=cost, cached=cached, outcome=outcome))
        # A follow-up's query rewrite made for alice's sales-assistant turn: billed, but not a request.
        s.add(ChatTurn(tenant="sales", subject="alice", assistant="sales-assistant", channel="internal",
                       prompt_name="query_rewrite", model="anthropic/claude-haiku-5-5",
                       created_at=datetime(2026, 11, 2, 10, tzinfo=UTC), prompt_tokens=40, completion_tokens=8,
                       cost_usd=0.00005, outcome="ok"))
        s.commit()


def get(api_client, cookies, query, tenant="sales", **kw):
    return api_client.get(f"/api/t/{tenant}/usage?{query}", cookies=cookies, **kw)


def test_totals_by_model_day_user_assistant(api_client, login_as, turns):
    carol = login_as("carol")  # sales admin
    r = get(api_client, carol, "from=2026-11-01&to=2026-11-30&group_by=model")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"] == {"requests": 3, "internal_calls": 1, "cached": 1, "prompt_tokens": 190,
                              "completion_tokens": 38, "total_tokens": 228, "cost_usd": pytest.approx(0.00075),
                              "downgraded": 0}
    by_model = {g["key"]: g for g in body["groups"]}
    assert set(by_model) == {"anthropic/claude-sonnet-5-5", "anthropic/claude-haiku-5-5"}
    haiku = by_model["anthropic/claude-haiku-5-5"]
    assert (haiku["requests"], haiku["internal_calls"]) == (2, 1)
    assert by_model["anthropic/claude-haiku-5-5"]["cached"] == 1

    days = {g["key"]: g["requests"] for g in get(api_client, carol, "from=2026-11-01&to=2026-11-30").json()["groups"]}
    assert days == {"2026-11-02": 2, "2026-11-03": 1}
    users = {g["key"]: g["cost_usd"] for g in
             get(api_client, carol, "from=2026-11-01&to=2026-11-30&group_by=user").json()["groups"]}
    assert users == {"alice": pytest.approx(0.00065), "bob": pytest.approx(0.0001)}
    assistants = {g["key"]: g["total_tokens"] for g in
                  get(api_client, carol, "from=2026-10-01&to=2026-11-30&group_by=assistant").json()["groups"]}
    assert assistants == {"deal-desk": 0, "sales-assistant": 120 + 60 + 100 + 48}


def test_tier_calls_and_calls_without_a_model_are_labelled_and_cancelled_turns_count(api_client, login_as,
                                                                                      api_services):
    at = datetime(2026, 11, 5, 9, tzinfo=UTC)
    with api_services.db.session() as s:
        s.add(ChatTurn(tenant="sales", subject="key:abc", channel="openai", assistant=None, tier="fast",
                       model="anthropic/claude-haiku-5-5", created_at=at, prompt_tokens=10, completion_tokens=5,
                       outcome="ok"))
        s.add(ChatTurn(tenant="sales", subject="alice", assistant="sales-assistant", tier="smart", model="",
                       created_at=at, outcome="ok"))  # "I don't know": no model call
        s.add(ChatTurn(tenant="sales", subject="bob", assistant="sales-assistant", tier="smart",
                       model="anthropic/claude-sonnet-5-5", created_at=at, prompt_tokens=300, completion_tokens=40,
                       cost_usd=0.0015, outcome="cancelled"))  # the caller went away mid-answer
        s.commit()
    carol = login_as("carol")
    q = "from=2026-11-05&to=2026-11-05&group_by="
    assistants = {g["key"]: g["total_tokens"] for g in get(api_client, carol, q + "assistant").json()["groups"]}
    assert assistants == {"tier:fast": 15, "sales-assistant": 340}
    models = {g["key"]: g["requests"] for g in get(api_client, carol, q + "model").json()["groups"]}
    assert models == {"anthropic/claude-haiku-5-5": 1, "(no model call)": 1, "anthropic/claude-sonnet-5-5": 1}
    assert get(api_client, carol, q + "day").json()["totals"]["cost_usd"] == pytest.approx(0.0015)


def test_only_tenant_admins(api_client, login_as, turns, api_services):
    assert get(api_client, login_as("alice"), "group_by=day").status_code == 403
    assert get(api_client, login_as("carol"), "group_by=day", tenant="engineering").status_code == 403
    admin_key = issue_key(db=api_services.db, tenant="sales", scopes=["admin"]).token
    chat_key = issue_key(db=api_services.db, tenant="sales", scopes=["chat"]).token
    ok = api_client.get("/api/t/sales/usage?from=2026-11-01&to=2026-11-30",
                        headers={"Authorization": f"Bearer {admin_key}"})
    assert ok.status_code == 200 and ok.json()["totals"]["requests"] == 3
    denied = api_client.get("/api/t/sales/usage", headers={"Authorization": f"Bearer {chat_key}"})
    assert denied.status_code == 403


def test_bad_parameters_are_clear_4xx(api_client, login_as):
    carol = login_as("carol")
    r = get(api_client, carol, "group_by=tenant")
    assert r.status_code == 422 and "group_by" in r.json()["detail"]
    r = get(api_client, carol, "from=2026-12-01&to=2026-11-01")
    assert r.status_code == 422 and "after" in r.json()["detail"]
    assert get(api_client, carol, "from=yesterday").status_code == 422


def test_the_report_counts_answers_a_spent_budget_moved_to_a_cheaper_tier(api_client, api_services, login_as):
    """Each group says how many of its answers were downgraded; the report says from which tier to which and which
    budget was spent (the usage row's downgraded_from and downgrade_reason), counted per tenant."""
    day = datetime(2026, 11, 4, 10, tzinfo=UTC)
    with api_services.db.session() as s:
        for tenant, who, tier, first, reason in [
                ("sales", "alice", "fast", "smart", "member_monthly_budget_usd"),
                ("sales", "alice", "fast", "smart", "member_monthly_budget_usd"),
                ("sales", "alice", "local", "smart", "member_monthly_budget_usd"),
                ("sales", "bob", "local", "fast", "monthly_budget_usd"),
                ("sales", "bob", "smart", None, None),
                ("engineering", "dave", "fast", "smart", "assistant_monthly_budget_usd")]:
            s.add(ChatTurn(tenant=tenant, subject=who, assistant="sales-assistant", tier=tier, model="m",
                           downgraded_from=first, downgrade_reason=reason, created_at=day, prompt_tokens=10,
                           outcome="ok"))
        s.commit()
    body = get(api_client, login_as("carol"), "from=2026-11-04&to=2026-11-04&group_by=user").json()
    assert body["totals"]["downgraded"] == 4 and body["totals"]["requests"] == 5
    assert {g["key"]: g["downgraded"] for g in body["groups"]} == {"alice": 3, "bob": 1}
    assert body["downgrades"] == [
        {"from_tier": "smart", "to_tier": "fast", "reason": "member_monthly_budget_usd", "answers": 2,
         "level": "member"},
        {"from_tier": "fast", "to_tier": "local", "reason": "monthly_budget_usd", "answers": 1, "level": "tenant"},
        {"from_tier": "smart", "to_tier": "local", "reason": "member_monthly_budget_usd", "answers": 1,
         "level": "member"}]
    page = api_client.get("/console/sales/usage?from=2026-11-04&to=2026-11-04", cookies=login_as("carol")).text
    assert 'id="total-downgraded" data-value="4"' in page
    assert ("2 answers on fast instead of smart: a member&#39;s monthly allowance was spent" in page
            or "2 answers on fast instead of smart: a member's monthly allowance was spent" in page)
    assert "assistant_monthly_budget_usd" not in page  # engineering's
