"""The tenant console in real Chromium, against a served app of its own (SQLite, embedded store, local model).

carol (Sales admin) signs in on /console and runs her department from the browser: a document uploaded there is
read, found by search, and gone from search once deleted there; a key created there works on the API until it is
revoked there (then 401); the usage tab's numbers are the usage API's; the audit tab filters by kind and person.
Every tab is screenshotted at desktop and phone width (tests/artifacts/console-*.png), has one h1, does not scroll
sideways at 390 px, is operable by keyboard, and has no serious or critical axe-core violation, light and dark.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import chat_login, serious_violations
from tests.conftest import start_server, stop_server
from ui.console_words import REFUSAL_FIXES

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TABS = ("knowledge", "keys", "usage", "audit")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PHRASE = "The Zorblax pricing exception code is PURPLE-OCTOPUS-42"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("console"))
    yield srv
    stop_server(srv)


def _context(browser, server, user: str, viewport: dict = DESKTOP, **options):  # noqa: ANN001, ANN202
    """A browser context with `user`'s session (signed in over HTTP, as the chat's login does)."""
    ctx = browser.new_context(viewport=viewport, **options)
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login(user).items()])
    return ctx


def _search(server, cookies: dict, query: str) -> list[dict]:
    r = httpx.post(f"{server.url}/api/t/sales/search", json={"query": query, "top_k": 10}, cookies=cookies,
                   timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_carol_signs_in_on_the_console_and_a_document_goes_in_and_out_of_search(browser, server, shot, tmp_path):
    page = browser.new_page(viewport=DESKTOP)
    page.goto(f"{server.url}/console")
    assert page.locator("#login h1").inner_text() == "Sign in to the Atrium Console"
    page.fill("#login-username", "carol")
    page.fill("#login-password", "atrium")
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/console/sales/knowledge$"))
    assert page.locator("h1").count() == 1 and "Sales" in page.locator("h1").inner_text()
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}

    note = tmp_path / "zorblax-exceptions.md"
    note.write_text(f"# Zorblax exceptions\n\n{PHRASE}. Ask the deal desk before using it.\n")
    page.set_input_files("#upload-files", str(note))
    page.click("#upload-submit")
    row = page.locator("tr[data-status=ready]", has_text="zorblax-exceptions.md")
    row.wait_for(timeout=180_000)  # the script follows the document until it is read, then shows the page again
    doc_id = row.get_attribute("data-id")
    assert "carol" in row.inner_text() and re.search(r"\d+ B", row.inner_text())
    shot(page, "console-knowledge-desktop")
    assert any(h["document_id"] == doc_id for h in _search(server, cookies, PHRASE))

    # said after the reload too (by the page's script, which may run after the row is there)
    expect(page.locator("#notice")).to_have_text("“Zorblax exceptions” is ready.", timeout=60_000)

    # Re-index this one document from its row: queued, read again, said so; audited as the service records it.
    row.locator("button.reindex-doc").click()
    expect(page.locator("#notice")).not_to_have_text("“Zorblax exceptions” is ready.", timeout=30_000)  # queued
    expect(page.locator("#notice")).to_have_text("“Zorblax exceptions” is ready.", timeout=180_000)
    page.locator(f"#doc-{doc_id}[data-status=ready]").wait_for(timeout=60_000)
    reindexed = httpx.get(f"{server.url}/api/t/sales/audit?kind=documents_reindexed", cookies=cookies).json()
    assert reindexed[0]["detail"] == {"documents": 1, "document_id": doc_id} and reindexed[0]["subject"] == "carol"
    assert any(h["document_id"] == doc_id for h in _search(server, cookies, PHRASE))

    page.once("dialog", lambda d: d.accept())
    row.locator("button.delete-doc").click()
    page.locator(f"#doc-{doc_id}").wait_for(state="detached", timeout=60_000)
    expect(page.locator("#notice")).to_have_text("Deleted “Zorblax exceptions”.", timeout=60_000)

    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"not a pdf at all")
    page.set_input_files("#upload-files", str(bad))
    page.click("#upload-submit")
    page.locator("#notice.bad").wait_for(timeout=60_000)
    said = page.locator("#notice").inner_text()
    assert said.startswith("Not added.") and said.count("broken.pdf") == 1, said  # the file named once
    assert page.locator("#upload-progress-row").is_hidden()  # no half-full bar left behind
    # ... and listed with the reason and the fix until dismissed, across a reload.
    refused = page.locator("#refused-list li", has_text="broken.pdf")
    refused.wait_for(timeout=30_000)
    fix = refused.locator(".refused-fix").inner_text()
    assert fix.removeprefix("Fix: ") in REFUSAL_FIXES.values(), fix  # the fix for its reason, not a generic one
    assert refused.locator(".refused-why").inner_text().startswith("Why: ")
    page.reload()
    refused.wait_for(timeout=30_000)
    shot(page, "console-knowledge-refused-desktop")
    refused.get_by_role("button", name="Dismiss").click()
    expect(page.locator("#refused-list li")).to_have_count(0)
    assert page.locator("#refused").is_hidden()
    page.reload()
    page.locator("#upload-files").wait_for()
    expect(page.locator("#refused-list li")).to_have_count(0)
    assert all(h["document_id"] != doc_id for h in _search(server, cookies, PHRASE))
    audit = httpx.get(f"{server.url}/api/t/sales/audit?kind=document_deleted", cookies=cookies).json()
    assert audit[0]["detail"]["document_id"] == doc_id and audit[0]["subject"] == "carol"
    # The notes are this user's: signing out removes them for whoever uses the browser next.
    page.set_input_files("#upload-files", str(bad))
    page.click("#upload-submit")
    page.locator("#refused-list li").first.wait_for(timeout=60_000)
    page.click("#sign-out")
    page.locator("#login-username").wait_for(timeout=60_000)
    assert page.evaluate("Object.keys(sessionStorage).filter((k) => k.startsWith('atrium-console-refused:'))") == []
    page.close()


def test_a_key_made_on_the_console_works_until_it_is_revoked_there(browser, server, shot):
    ctx = _context(browser, server, "carol")
    page = ctx.new_page()
    page.goto(f"{server.url}/console/sales/keys")
    page.fill("#key-name", "Console test service")
    page.check("#scope-retrieval")
    page.uncheck("#scope-chat")
    page.click("#key-submit")
    token = page.locator("#new-key-token")
    token.wait_for()
    key = token.input_value()
    assert key.startswith("atr_")
    shot(page, "console-keys-created-desktop")
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{server.url}/api/t/sales/documents", headers=auth).status_code == 200
    assert httpx.post(f"{server.url}/api/t/sales/chat", headers=auth,  # the scopes it was given, no more
                      json={"assistant": "sales-assistant", "message": "hi"}).status_code == 403

    key_id = key.split("_")[1]
    row = page.locator(f"#key-{key_id}")
    row.wait_for(timeout=30_000)  # in the list at once, while the key is still shown above it
    assert token.is_visible() and token.input_value() == key
    assert row.get_attribute("data-state") == "active" and "carol" in row.inner_text()
    page.once("dialog", lambda d: d.accept())
    row.locator("button.revoke-key").click()
    page.wait_for_function(f"document.querySelector('#key-{key_id}')?.dataset.state === 'revoked'")
    r = httpx.get(f"{server.url}/api/t/sales/documents", headers=auth)
    assert (r.status_code, r.json()["error"]) == (401, "revoked_api_key")
    ctx.close()


def test_the_usage_tab_shows_the_usage_apis_numbers(browser, server, shot):
    cookies = server.login("carol")
    r = httpx.post(f"{server.url}/api/t/sales/chat", cookies=cookies, timeout=300,
                   json={"assistant": "sales-assistant", "message": "What is the discount cap?"})
    assert r.status_code == 200, r.text
    ctx = _context(browser, server, "carol")
    page = ctx.new_page()
    page.goto(f"{server.url}/console/sales/usage")
    start, end = page.input_value("#range-from"), page.input_value("#range-to")
    today = datetime.now(UTC).date()
    assert (start, end) == ((today - timedelta(days=29)).isoformat(), today.isoformat())
    api = {g: httpx.get(f"{server.url}/api/t/sales/usage", cookies=cookies,
                        params={"from": start, "to": end, "group_by": g}).json() for g in ("day", "assistant", "user")}
    totals = api["day"]["totals"]
    assert totals["requests"] >= 1 and totals["total_tokens"] > 0
    assert int(page.get_attribute("#total-requests", "data-value")) == totals["requests"]
    assert int(page.get_attribute("#total-tokens", "data-value")) == totals["total_tokens"]
    assert float(page.get_attribute("#total-cost", "data-value")) == totals["cost_usd"]
    for chart, column in (("#chart-requests", "requests"), ("#chart-tokens", "total_tokens"),
                          ("#chart-cost", "cost_usd")):
        bars = {el.get_attribute("data-key"): float(el.get_attribute("data-value"))
                for el in page.locator(f"{chart} [data-key]").all()}
        assert len(bars) == 30
        assert {k: v for k, v in bars.items() if v} == {g["key"]: float(g[column]) for g in api["day"]["groups"]
                                                         if g[column]}
    for group, table in (("assistant", "#usage-assistant"), ("user", "#usage-user")):
        shown = {el.get_attribute("data-key"): int(el.locator("td[data-label=Tokens]").get_attribute("data-value"))
                 for el in page.locator(f"{table} tbody tr[data-key]").all()}
        assert shown == {g["key"]: g["total_tokens"] for g in api[group]["groups"]}
    assert "sales-assistant" in page.locator("#usage-assistant").inner_text()
    for field in ("#range-from", "#range-to"):  # one format whatever the browser's locale: YYYY-MM-DD
        assert page.get_attribute(field, "type") == "text" and page.get_attribute(field, "placeholder") == "YYYY-MM-DD"
    assert "No usage in this range" not in page.locator("#chart-requests").inner_html()
    csv = page.request.get(f"{server.url}" + page.get_attribute("#csv-day", "href"))
    assert csv.ok and csv.text().splitlines()[0].startswith("day,requests")
    shot(page, "console-usage-desktop")
    page.fill("#range-from", "2020-01-01")  # a range without usage: each chart says so in words
    page.fill("#range-to", "2020-01-31")
    page.press("#range-to", "Enter")
    page.wait_for_url(re.compile(r".*from=2020-01-01.*to=2020-01-31.*"))
    for chart in ("#chart-requests", "#chart-tokens", "#chart-cost"):
        assert page.locator(f"{chart} text.chart-empty").text_content() == "No usage in this range", chart
    assert page.input_value("#range-from") == "2020-01-01"
    shot(page, "console-usage-empty-desktop")
    ctx.close()


def test_the_audit_tab_filters_by_kind_and_person_and_explains_refusals(browser, server, shot):
    refused = httpx.get(f"{server.url}/console/sales/keys", cookies=server.login("alice"))
    assert refused.status_code == 403
    ctx = _context(browser, server, "carol")
    page = ctx.new_page()
    page.goto(f"{server.url}/console/sales/audit")
    page.select_option("#audit-kind", "denied")
    page.fill("#audit-person", "alice")
    page.press("#audit-person", "Enter")  # the form submits from the keyboard
    page.wait_for_url(re.compile(r".*kind=denied.*person=alice.*"))
    rows = page.locator("#audit-events tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):
        assert (rows.nth(i).get_attribute("data-kind"), rows.nth(i).get_attribute("data-subject")) == ("denied",
                                                                                                        "alice")
    assert "A member tried something their role does not allow" in page.locator("#audit-events").inner_text()
    shot(page, "console-audit-desktop")
    ctx.close()


def test_keyboard_only_from_tab_to_tab_and_a_new_key(browser, server):
    ctx = _context(browser, server, "carol")
    page = ctx.new_page()
    page.goto(f"{server.url}/console/sales/knowledge")
    for _ in range(40):  # Tab until the Keys tab has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "tab-keys":
            break
    else:
        pytest.fail("the Keys tab is not reachable with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/sales/keys$"))
    page.focus("#key-name")
    page.keyboard.type("Keyboard key")
    page.keyboard.press("Enter")
    page.locator("#new-key-token").wait_for()
    assert page.evaluate("document.activeElement.id") == "new-key-title"  # the once-shown key is announced
    ctx.close()


def test_a_member_is_refused_in_words(browser, server, shot):
    ctx = _context(browser, server, "alice")
    page = ctx.new_page()
    response = page.goto(f"{server.url}/console")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "The console is for tenant admins"
    assert "Console" not in page.locator("nav.topnav").inner_text()  # not a link alice may use
    ctx.close()


def test_the_chats_account_menu_leads_to_the_console_and_the_studio(browser, server, shot):
    ctx, page = chat_login(browser, server.url, "carol")  # a tenant admin: both
    page.locator("#atrium-nav a", has_text="Console").wait_for(timeout=60_000)
    assert page.locator("#atrium-nav").inner_text().split() == ["Chat", "Studio", "Console"]
    page.click("#user-nav-button")
    page.get_by_role("menuitem", name="Open the console").wait_for(timeout=30_000)
    assert page.get_by_role("menuitem", name="Open the studio").count() == 1
    shot(page, "console-chat-account-menu")
    page.keyboard.press("Escape")
    page.click("#theme-toggle")  # the links belong to the account menu alone, not to the theme menu beside it
    page.get_by_role("menuitem", name="Dark Theme").wait_for(timeout=30_000)
    assert page.get_by_role("menuitem", name="Open the console").count() == 0
    page.keyboard.press("Escape")
    page.click("#user-nav-button")
    page.get_by_role("menuitem", name="Open the console").click()
    page.wait_for_url(re.compile(r".*/console/sales/knowledge$"))
    ctx.close()
    ctx, page = chat_login(browser, server.url, "bob")  # an editor: the studio only
    page.click("#user-nav-button")
    page.get_by_role("menuitem", name="Open the studio").wait_for(timeout=30_000)
    assert page.get_by_role("menuitem", name="Open the console").count() == 0
    ctx.close()


# What sticks out past the window's right edge (nothing, when the page does not scroll sideways).
_OVERFLOW = """() => document.documentElement.scrollWidth <= window.innerWidth ? [] :
  Array.from(document.querySelectorAll("body *")).filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 6).map((e) => `${e.tagName}.${e.className}: ${(e.textContent || "").trim().slice(0, 60)}`)"""



@pytest.mark.parametrize(("viewport", "scheme"), [(DESKTOP, "light"), (PHONE, "light"), (DESKTOP, "dark")],
                         ids=["desktop", "phone", "dark"])
def test_every_tab_fits_a_phone_and_has_no_serious_accessibility_violation(browser, server, shot, viewport,
                                                                          scheme):
    # axe is injected as a script of its own: only this context lets it past the page's CSP.
    ctx = _context(browser, server, "carol", viewport, bypass_csp=True, color_scheme=scheme)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    width = "phone" if viewport["width"] < 500 else "desktop"
    for tab in TABS:
        page.goto(f"{server.url}/console/sales/{tab}")
        page.wait_for_load_state("networkidle")
        assert errors == [], tab  # an ordinary page load logs no error in the browser
        assert page.locator("h1").count() == 1, tab
        assert page.evaluate(_OVERFLOW) == [], f"{tab} scrolls sideways"
        shot(page, f"console-{tab}-{width}" + ("-dark" if scheme == "dark" else ""))
        assert serious_violations(page) == [], tab
    ctx.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_studio_and_the_operations_page_share_the_header_light_and_dark(browser, server, shot, scheme):
    """One header with the same navigation on every page (only what each may use), in both colour schemes, after a
    "Skip to content" link; the colours stay readable (axe-core's contrast rule) when the system is dark."""
    for user, path, links, name in (("bob", "/studio", ["Chat", "Studio"], "studio"),
                                    ("root", "/admin", ["Admin"], "admin"),
                                    ("carol", "/console/sales/usage", ["Chat", "Studio", "Console"], "console")):
        ctx = _context(browser, server, user, bypass_csp=True, color_scheme=scheme)
        page = ctx.new_page()
        page.goto(f"{server.url}{path}")
        nav = page.locator("nav.topnav")
        assert nav.locator("a").all_inner_texts() == links, path
        assert nav.locator("a[aria-current=page]").inner_text() == links[-1], path
        if name == "studio":
            page.locator("#assistant-list button").first.wait_for()
        page.keyboard.press("Tab")  # the first stop: "Skip to content", shown when focused
        skip = page.locator("a.skip-link")
        assert page.evaluate("document.activeElement.className") == "skip-link" and skip.is_visible(), path
        assert skip.inner_text() == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "content", path
        page.keyboard.press("Tab")  # the next stop is inside the page, past the header's links
        assert page.evaluate("!document.activeElement.closest('header')"), path
        assert serious_violations(page, rules=("color-contrast",)) == [], (path, scheme)
        ctx.close()
