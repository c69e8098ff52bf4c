"""The tenant console (/console): tenant admins of that tenant only, through the one access decision; every refusal
audited; what it shows is what the REST API says, for its own tenant alone.

CONSOLE_ROUTES is the inventory of the console's pages (test_console_inventory_is_complete fails on a new one that
is missing here); every one is refused to a Sales member, a Sales editor, an Engineering admin and an anonymous
browser, with an audit event each. Its actions are the REST routes (tests/api/test_isolation.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from backend.api.console import ROUTE
from backend.auth.surface import HTTP_SURFACE, SurfaceTable, walk_routes
from backend.db.models import AuditEvent, ChatTurn
from tests.api.test_documents import wait_ready
from tests.conftest import session_token

CONSOLE_ROUTES = ["/console/{tenant}", "/console/{tenant}/knowledge", "/console/{tenant}/keys",
                  "/console/{tenant}/usage", "/console/{tenant}/usage.csv", "/console/{tenant}/audit"]


def _signed(subject: str, groups: list[str]) -> dict[str, str]:
    """A session of a person no demo user is (signed as the app signs its own)."""
    return {"access_token": session_token(subject, {"sub": subject, "name": subject.title(), "groups": groups})}


@pytest.fixture
def people(login_as) -> dict[str, dict[str, str]]:
    return {"carol": login_as("carol"), "alice": login_as("alice"), "bob": login_as("bob"),
            "eng-admin": _signed("eng-admin", ["engineering", "engineering-admins"]),
            "two-hats": _signed("two-hats", ["sales", "sales-admins", "finance", "finance-admins"])}


def _denials(client) -> list[AuditEvent]:
    with client.app.state.services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.kind == "denied").order_by(AuditEvent.id)))


def _count(client) -> int:
    return sum(e.count for e in _denials(client))


def test_console_inventory_is_complete(api_client):
    """Every console page the app serves is listed here and in the surface table, guarded tenant:admin."""
    served = {r.path for r in walk_routes(api_client.app.router.routes)
              if getattr(r, "path", "").startswith(ROUTE + "/{tenant}")}
    assert served == set(CONSOLE_ROUTES)
    table = SurfaceTable(HTTP_SURFACE)
    for path in CONSOLE_ROUTES:
        entry = table.listed("GET", path)
        assert entry is not None and str(entry.guard) == "tenant:admin" and entry.enforced_by == "handler", path
    assert str(table.listed("GET", ROUTE).guard) == "signed_in"


def test_carol_sees_and_changes_only_sales(api_client, people):
    c, carol = api_client, people["carol"]
    # Engineering has a document and a key of its own; Sales has one key, made through the console's route.
    eng = people["eng-admin"]
    assert c.post("/api/t/engineering/keys", cookies=eng, json={"name": "eng-secret-key", "scopes": ["chat"]}
                  ).status_code == 201
    assert c.post("/api/t/engineering/documents", cookies=eng,
                  files={"files": ("eng-runbook.md", b"# Runbook\n\nEngineering only.", "text/markdown")}
                  ).status_code == 202
    made = c.post("/api/t/sales/keys", cookies=carol, json={"name": "sales-dify", "scopes": ["retrieval"]})
    assert made.status_code == 201

    r = c.get("/console", cookies=carol, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/console/sales/knowledge")
    pages = {tab: c.get(f"/console/sales/{tab}", cookies=carol) for tab in ("knowledge", "keys", "usage", "audit")}
    for tab, page in pages.items():
        assert page.status_code == 200, tab
        assert page.text.count("<h1") == 1, tab
        assert "Sales" in page.text and "Engineering" not in page.text, tab
        assert 'href="/console" aria-current="page"' in page.text  # the shared header: Console is this page
        assert 'href="/admin"' not in page.text  # carol is no operator: no link she may not use
    assert "sales-dify" in pages["keys"].text and "eng-secret-key" not in pages["keys"].text
    assert "eng-runbook" not in pages["knowledge"].text
    assert "key_created" in pages["audit"].text

    # Another tenant's console is refused, audited, and changes nothing.
    before = _count(c)
    for path in CONSOLE_ROUTES:
        r = c.get(path.format(tenant="engineering"), cookies=carol, follow_redirects=False)
        assert r.status_code == 403 and "recorded in the audit log" in r.text, path
    assert _count(c) == before + len(CONSOLE_ROUTES)
    assert _denials(c)[-1].reason == "tenant_mismatch" and _denials(c)[-1].subject == "carol"
    keys = c.get("/api/t/engineering/keys", cookies=eng).json()
    assert [k["name"] for k in keys] == ["eng-secret-key"] and keys[0]["revoked_at"] is None


@pytest.mark.parametrize(("who", "reason"), [("alice", "missing_role"), ("bob", "missing_role"),
                                             ("eng-admin", "tenant_mismatch"), ("anonymous", "not_authenticated")])
def test_others_are_refused_every_console_page_and_audited(api_client, people, who, reason):
    cookies = people.get(who)
    for path in CONSOLE_ROUTES:
        before = {e.id: e.count for e in _denials(api_client)}
        r = api_client.get(path.format(tenant="sales"), cookies=cookies, follow_redirects=False)
        assert r.status_code == (401 if who == "anonymous" else 403), (who, path)
        assert r.headers["content-type"].startswith("text/html")
        assert r.text.count("<h1") == 1
        touched = [e for e in _denials(api_client) if e.count > before.get(e.id, 0)]
        assert len(touched) == 1, (who, path)
        assert (touched[0].reason, touched[0].tenant, touched[0].route) == (reason, "sales", path.format(
            tenant="sales")), (who, path)
    # The picker too: a member and an editor administer no department.
    if who in ("alice", "bob"):
        r = api_client.get("/console", cookies=cookies)
        assert r.status_code == 403 and "The console is for tenant admins" in r.text
        assert r.text.count("for tenant admins") == 1 and "You administer no department." in r.text  # said once
        assert "ask your Atrium administrator" in r.text  # and what to do about it


def test_the_header_lists_only_what_each_may_use(api_client, people, login_as):
    def links(path: str, cookies: dict) -> list[str]:
        text = api_client.get(path, cookies=cookies).text
        nav = text.split('<nav class="topnav"', 1)[1].split("</nav>", 1)[0]
        return [label for label in ("Chat", "Studio", "Console", "Admin") if f">{label}</a>" in nav]

    assert links("/console/sales/knowledge", people["carol"]) == ["Chat", "Studio", "Console"]
    assert links("/studio", people["bob"]) == ["Chat", "Studio"]
    assert links("/admin", login_as("root")) == ["Admin"]

    # The chat draws the same header from /api/me's `pages` (public/atrium.js part 11).
    for cookies, labels in ((people["carol"], ["Chat", "Studio", "Console"]), (people["bob"], ["Chat", "Studio"]),
                            (people["alice"], ["Chat"]), (login_as("root"), ["Admin"])):
        pages = api_client.get("/api/me", cookies=cookies).json()["pages"]
        assert [p["label"] for p in pages] == labels
        assert [p["href"] for p in pages] == ["/" + label.lower() for label in labels]


def test_an_admin_of_two_departments_picks_one(api_client, people):
    page = api_client.get("/console", cookies=people["two-hats"])
    assert page.status_code == 200
    assert 'href="/console/finance/knowledge"' in page.text and 'href="/console/sales/knowledge"' in page.text
    assert api_client.get("/console/finance/keys", cookies=people["two-hats"]).status_code == 200
    assert api_client.get("/console/engineering/keys", cookies=people["two-hats"]).status_code == 403


@pytest.fixture
def turns(api_services):
    rows = [("sales", "alice", "sales-assistant", datetime(2026, 11, 2, 10, tzinfo=UTC), 100, 20, 0.0006),
            ("sales", "=cmd", "deal-desk", datetime(2026, 11, 3, 9, tzinfo=UTC), 50, 10, 0.0001),
            ("engineering", "dave", "eng-assistant", datetime(2026, 11, 2, 10, tzinfo=UTC), 999, 999, 9.0)]
    with api_services.db.session() as s:
        for tenant, who, assistant, when, pt, ct, cost in rows:
            s.add(ChatTurn(tenant=tenant, subject=who, assistant=assistant, model="m", created_at=when,
                           prompt_tokens=pt, completion_tokens=ct, cost_usd=cost, outcome="ok"))
        s.commit()


def test_usage_tab_and_csv_say_what_the_usage_api_says(api_client, people, turns):
    carol, query = people["carol"], "from=2026-11-01&to=2026-11-30"
    for group in ("day", "assistant", "user"):
        api = api_client.get(f"/api/t/sales/usage?{query}&group_by={group}", cookies=carol).json()
        rows = list(csv.DictReader(io.StringIO(api_client.get(f"/console/sales/usage.csv?{query}&group_by={group}",
                                                              cookies=carol).text)))
        assert [r[group] for r in rows] == [("'" + g["key"] if g["key"].startswith("=") else g["key"])
                                            for g in api["groups"]]  # a formula stays text in a spreadsheet
        assert [int(r["total_tokens"]) for r in rows] == [g["total_tokens"] for g in api["groups"]]
        assert [float(r["cost_usd"]) for r in rows] == [g["cost_usd"] for g in api["groups"]]
    page = api_client.get(f"/console/sales/usage?{query}", cookies=carol).text
    totals = api_client.get(f"/api/t/sales/usage?{query}", cookies=carol).json()["totals"]
    assert f'id="total-tokens" data-value="{totals["total_tokens"]}"' in page  # 180, not engineering's 1,998
    assert 'data-key="2026-11-02" data-value="120"' in page  # the tokens chart's bar of that day
    assert page.count('class="chart"') == 3 and "<title" in page
    bad = api_client.get("/console/sales/usage?from=2026-12-31&to=2026-01-01", cookies=carol)
    assert bad.status_code == 200 and "is after" in bad.text  # said on the page, not a bare JSON error


def test_the_cost_chart_says_no_cost_under_free_usage_and_no_usage_under_none(api_client, people, api_services):
    with api_services.db.session() as s:  # answered by the in-process model only: tokens, no dollars
        s.add(ChatTurn(tenant="sales", subject="alice", assistant="sales-assistant", model="local",
                       created_at=datetime(2026, 10, 5, 10, tzinfo=UTC), prompt_tokens=40, completion_tokens=9,
                       cost_usd=0.0, outcome="ok"))
        s.commit()

    def cost_note(query: str) -> str:
        page = api_client.get(f"/console/sales/usage?{query}", cookies=people["carol"]).text
        chart = page[page.index('id="chart-cost"'):]
        return chart[chart.index('class="chart-empty"'):].split(">", 1)[1].split("<", 1)[0]

    assert cost_note("from=2026-10-01&to=2026-10-31") == "No cost in this range"
    assert cost_note("from=2020-01-01&to=2020-01-31") == "No usage in this range"


def test_audit_tab_filters_and_explains_denials(api_client, people):
    c, carol = api_client, people["carol"]
    c.get("/console/sales/keys", cookies=people["alice"])  # a refusal to explain
    c.post("/api/t/sales/keys", cookies=carol, json={"name": "k", "scopes": ["chat"]})
    page = c.get("/console/sales/audit?kind=denied&person=alice", cookies=carol).text
    assert page.count('data-kind="denied"') >= 1 and 'data-kind="key_created"' not in page
    assert "A member tried something their role does not allow" in page
    page = c.get("/console/sales/audit?kind=key_created", cookies=carol).text
    assert 'data-subject="carol"' in page and 'data-kind="denied"' not in page
    # A change in a sentence a person reads, not the event's raw fields.
    assert "Created the API key “k” (chat; expires " in page and "expires at:" not in page
    assert ">API keys created</span>" in page  # the kind in words; its code stays in data-kind
    assert "No events match" in c.get("/console/sales/audit?person=nobody-at-all", cookies=carol).text
    api = c.get("/api/t/sales/audit?subject=alice", cookies=carol).json()
    assert api and {e["subject"] for e in api} == {"alice"}


def test_a_failed_document_says_why_and_the_fix(api_client, people):
    carol = people["carol"]
    r = api_client.post("/api/t/sales/documents", cookies=carol,
                        files={"files": ("blank.html", b"<html><body><p>   </p></body></html>", "text/html")})
    assert r.status_code == 202, r.text
    doc_id = r.json()["documents"][0]["id"]
    [doc] = wait_ready(api_client, "sales", [doc_id], cookies=carol)
    assert doc["status"] == "failed" and "no text" in doc["error"]
    page = api_client.get("/console/sales/knowledge", cookies=carol).text
    row = page.split(f'id="doc-{doc_id}"', 1)[1].split("</tr>", 1)[0]
    assert "Why:</strong> no text could be extracted" in row and "run it through OCR" in row
    assert "Re-index failed documents (1)" in page
    assert "carol" in row and "blank.html" in row
