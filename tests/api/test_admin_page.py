"""GET /admin, in-process: platform admins see tenants, models, readiness, usage and denials (and the view
is audited); everyone else gets a 403 page and a denial row; anonymous visitors get a sign-in link."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from backend.db.models import AuditEvent, ChatTurn


def as_(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": f"access_token={cookies['access_token']}"}


def events(services, kind: str) -> list[AuditEvent]:
    with services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)))


@pytest.fixture
def root(login_as) -> dict[str, str]:
    return as_(login_as("root"))


def test_root_sees_tenants_models_readiness_and_denials(api_client, api_services, login_as, root):
    # A denial to show: alice tries another tenant's audit log.
    assert api_client.get("/api/t/finance/audit", headers=as_(login_as("alice"))).status_code == 403
    r = api_client.get("/admin", headers=root)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    page = html.unescape(r.text)
    for t in api_services.registry.all():
        assert f'id="tenant-{t.id}"' in page and t.name in page
        assert all(a.title in page for a in t.assistants)
    sales = api_services.registry.get("sales")
    row = page.split('id="tenant-sales"')[1].split("</tr>")[0]
    assert f"routing <strong>{sales.model_policy.routing}</strong>" in row
    assert f"{sales.quotas.requests_per_minute:,} req/min" in row
    assert f"${sales.quotas.monthly_budget_usd:.2f}/month" in row
    live = api_services.llm.live
    assert live.live, "the test config has at least one live tier"
    for tier in sales.model_policy.allowed_tiers:  # allowed but not live is shown struck out
        assert (f'title="not live">{tier}<' in row) == (tier not in live.live)
    for tier, models in live.live.items():
        assert all(m in page for m in models) and f'<span class="tier">{tier}</span>' in page
    for label, reason in live.excluded.items():
        assert label in page and reason in page
    for part in api_services.readiness():
        assert f"<strong>{part}</strong>" in page
    assert 'id="prompt-problems">Every assistant has a production prompt.' in page
    denials = page.split('id="denial-events"')[1]
    assert "alice" in denials and "/api/t/finance/audit" in denials and "tenant_mismatch" in denials
    assert "No suspicious access recorded." in page
    # The view itself is audited, as the /api/admin routes are.
    access = events(api_services, "admin_access")
    assert [(e.subject, e.route, e.status) for e in access] == [("root", "/admin", 200)]


def test_usage_for_the_current_month(api_client, api_services, root):
    now = datetime.now(UTC)
    last_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(seconds=1)
    rows = [("sales", now, 1200, 34, 0.5, "ok"), ("sales", now, 1000, 0, 0.25, "ok"),
            ("sales", last_month, 99_999, 1, 7.0, "ok"),  # previous month: not counted
            ("sales", now, 0, 0, 0.0, "quota"),  # refused, not an answered turn
            ("engineering", now, 10, 5, 0.001, "ok")]
    with api_services.db.session() as s:
        for tenant, when, pt, ct, cost, outcome in rows:
            s.add(ChatTurn(tenant=tenant, subject="x", created_at=when, prompt_tokens=pt, completion_tokens=ct,
                           cost_usd=cost, outcome=outcome))
        s.commit()
    page = api_client.get("/admin", headers=root).text
    sales = page.split('id="tenant-sales"')[1].split("</tr>")[0]
    nums = [c.split("<")[0] for c in re.split(r'<td class="num" data-label="[^"]+">', sales)[1:]]
    assert nums == ["2", "2,234", "$0.7500"]
    assert "0% of budget" in sales  # $0.75 of $200
    eng = page.split('id="tenant-engineering"')[1].split("</tr>")[0]
    cells = re.split(r'<td class="num" data-label="[^"]+">', eng)[1:]
    assert [c.split("<")[0] for c in cells] == ["1", "15", "$0.0010"]


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_non_operators_get_403_and_a_denial(api_client, api_services, login_as, user):
    r = api_client.get("/admin", headers=as_(login_as(user)))
    assert r.status_code == 403
    assert "platform operators" in r.text and 'id="tenants"' not in r.text and "Sales" in r.text
    denied = events(api_services, "denied")
    assert [(e.subject, e.route, e.status, e.reason) for e in denied] == [(user, "/admin", 403, "missing_role")]
    assert events(api_services, "admin_access") == []


def test_anonymous_gets_a_sign_in_form_that_stays_on_the_page(api_client, api_services):
    r = api_client.get("/admin")
    assert r.status_code == 401
    # The demo's password login: a form on this page (posting to the chat's login in the background), not a
    # link into the chat that leaves the operator there.
    assert 'id="login-form"' in r.text and 'fetch("/chat/login"' in r.text and "window.location.reload()" in r.text
    assert "come back to" not in r.text
    assert 'id="tenants"' not in r.text and "Sales" not in r.text
    assert [(e.subject, e.route, e.reason) for e in events(api_services, "denied")] == \
        [(None, "/admin", "not_authenticated")]
    # A forged cookie is not a session.
    assert api_client.get("/admin", headers={"Cookie": "access_token=forged"}).status_code == 401


def test_without_any_sign_in_configured_the_page_names_the_settings(make_api_client):
    """No password login and no identity provider: nobody can sign in, and the page says what to set (the
    IdP's link, with its way back to /admin, is tested against a real provider in tests/auth/test_oidc_login.py)."""
    r = make_api_client(ATRIUM_DEV_LOGIN="false").get("/admin")
    assert r.status_code == 401
    assert 'id="login-form"' not in r.text and 'id="login-idp"' not in r.text
    assert "No sign-in is configured" in r.text and "OIDC_ISSUER" in r.text and "ATRIUM_DEV_LOGIN=1" in r.text


def test_sign_in_prompts_are_audited_but_listed_apart_from_denials(api_client, api_services, login_as, root):
    """The operator's own visits before signing in are denials (audited like every refusal) but no security
    signal: they are folded away below the real ones, which the heading counts honestly ("up to 50")."""
    for _ in range(3):
        assert api_client.get("/admin").status_code == 401
    assert api_client.get("/api/t/sales/prompts").status_code == 401  # an anonymous API call is a real denial
    assert api_client.get("/admin", headers=as_(login_as("alice"))).status_code == 403
    # Every refusal is still audited; repeats of one (same source, reason, route) are counted on one row.
    assert sum(e.count for e in events(api_services, "denied")) == 5, "every refusal is still audited"
    page = html.unescape(api_client.get("/admin", headers=root).text)
    assert "up to 50" in page and "the last 50" not in page
    real = page.split('id="denial-events"')[1].split("</table>")[0]
    assert real.count("<tr>") == 1 + 2  # header + alice's 403 and the anonymous API call
    assert "alice" in real and "/api/t/sales/prompts" in real and "<code>/admin</code>" in real
    assert real.count("not_authenticated") == 1
    folded = page.split('<details id="sign-in-prompts"')[1].split("</details>")[0]
    assert "Sign-in prompts (3)" in folded and "before" in folded
    rows = folded.split('id="sign-in-prompt-events"')[1].split("</table>")[0]
    assert rows.count("<tr>") - 1 == rows.count("not_authenticated") <= 3  # one row per window, counted


def test_suspicious_access_is_listed(api_client, api_services, login_as, root):
    erin = as_(login_as("erin"))
    for _ in range(api_services.settings.suspicious_denials):
        assert api_client.get("/admin", headers=erin).status_code == 403
    flagged = events(api_services, "suspicious_access")
    assert flagged, "repeated denials raise a suspicious_access event"
    page = html.unescape(api_client.get("/admin", headers=root).text)
    section = page.split('id="suspicious-events"')[1].split("</table>")[0]
    assert section.count("<tr>") == len(flagged) + 1  # header row + one per event
    assert "erin" in section and flagged[0].reason in section


def test_static_files(api_client):
    r = api_client.get("/admin/static/admin.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert api_client.get("/admin/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")
    for bad in ("..%2Ftemplates%2Fadmin.html", "../templates/admin.html", "nope.css", "admin.html"):
        assert api_client.get(f"/admin/static/{bad}").status_code == 404


def test_assistants_without_a_prompt_are_listed_without_failing_readiness(make_api_client, prompts_root, login_as):
    import shutil

    shutil.rmtree(prompts_root / "sales" / "deal-desk")
    client = make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root))
    page = html.unescape(client.get("/admin", headers=as_(login_as("root"))).text)
    listed = page.split('id="prompt-problems"')[1].split("</ul>")[0]
    assert "<code>sales/deal-desk</code>" in listed
    assert f"{prompts_root / 'sales' / 'deal-desk'} does not exist" in listed and "create v0001.md" in listed
    assert '<span class="badge ok">ready</span>' in page
