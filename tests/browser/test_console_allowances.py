"""The console's Usage tab shows every member against their allowance, and a tenant admin raises one member's
allowance for the month there (real Chromium, a served app of its own: SQLite, member allowances in Sales).

carol (Sales admin) sees alice's, bob's and her own usage against their allowances — the usage API's report by
user, to the token and the cent —, raises alice's for the month from the page (the allowances route: audited, then
shown as raised), is told in words why she cannot raise her own, and the tab has no serious axe-core violation and
does not scroll sideways at 390 px, with the members' table on it.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import serious_violations
from tests.browser.served import seed_turns
from tests.conftest import start_server, stop_server
from tests.llm.conftest import NO_QUOTAS
from tests.llm.fakes import make_config_dir, mock, set_tenant

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-allowances")
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "hi")], quotas=NO_QUOTAS,
                          policy={"allowed_tiers": ["fast"]})
    set_tenant(cfg, "sales", quotas={
        "member": {"tokens_per_day": 1000, "monthly_budget_usd": 2.0},
        "member_overrides": [{"name": "admins", "role": "tenant_admin", "monthly_budget_usd": 10.0}]})
    srv = start_server(tmp, {"ATRIUM_CONFIG_DIR": str(cfg)})
    _seed(srv)
    yield srv
    stop_server(srv)


def _seed(server) -> None:  # noqa: ANN001
    """This month's calls of three members (today's, so both their tokens today and their dollars count)."""
    seed_turns(server, [{"subject": who, "prompt_tokens": tokens, "cost_usd": cost, "allowance": allowance}
                        for who, tokens, cost, allowance in (("alice", 900, 1.9, "default"),
                                                             ("bob", 120, 0.25, "default"),
                                                             ("carol", 10, 3.0, "admins"))],
               tenant="sales", model="anthropic/claude-haiku-5-5", tier="fast")


def _context(browser, server, user: str, viewport: dict = DESKTOP, **options):  # noqa: ANN001, ANN202
    ctx = browser.new_context(viewport=viewport, **options)
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login(user).items()])
    return ctx


def _members(page) -> dict[str, dict]:  # noqa: ANN001
    shown = {}
    for row in page.locator("#members tbody tr[data-member]").all():
        tokens, cost = row.locator("td.member-tokens"), row.locator("td.member-cost")
        shown[row.get_attribute("data-member")] = {
            "tokens": int(tokens.get_attribute("data-value")), "tokens_limit": tokens.get_attribute("data-limit"),
            "cost": float(cost.get_attribute("data-value")), "cost_limit": cost.get_attribute("data-limit"),
            "text": row.inner_text()}
    return shown


def test_carol_sees_each_member_against_their_allowance_and_raises_alices(browser, server, shot):
    cookies = server.login("carol")
    ctx = _context(browser, server, "carol")
    page = ctx.new_page()
    page.goto(f"{server.url}/console/sales/usage")
    shown = _members(page)
    assert set(shown) == {"alice", "bob", "carol"}
    report = httpx.get(f"{server.url}/api/t/sales/usage", params={"group_by": "user"}, cookies=cookies).json()
    for group in report["groups"]:
        figures = group["allowance"]
        row = shown[group["member"]]
        assert row["tokens"] == figures["today"]["tokens"] and row["cost"] == figures["month"]["cost_usd"]
        assert row["tokens_limit"] == str(figures["today"]["limit"])
        assert float(row["cost_limit"]) == figures["month"]["limit_usd"]
    assert "900 of 1,000" in shown["alice"]["text"] and "$1.90 of $2.00" in shown["alice"]["text"]
    assert "admins" in shown["carol"]["text"] and "$3.00 of $10.00" in shown["carol"]["text"]
    shot(page, "console-allowances-before")

    # alice's allowance, raised for the month from the page
    page.select_option("#raise-member", "alice")
    page.fill("#raise-tokens", "5000")
    page.fill("#raise-usd", "4.5")
    page.click("#raise-submit")
    expect(page.locator("#notice")).to_contain_text("Raised alice's allowance to 5,000 tokens a day and $4.50 this "
                                                    "month", timeout=30_000)
    page.locator("#members tr[data-member=alice] .badge", has_text="raised this month").wait_for(timeout=30_000)
    alice = _members(page)["alice"]
    assert (alice["tokens_limit"], float(alice["cost_limit"])) == ("5000", 4.5)
    assert "900 of 5,000" in alice["text"] and "$1.90 of $4.50" in alice["text"]
    assert "raised" not in _members(page)["bob"]["text"]  # only alice's
    mine = httpx.get(f"{server.url}/api/me/usage", cookies=server.login("alice")).json()["tenants"]["sales"]
    assert mine["today"]["limit"] == 5000 and mine["month"]["limit_usd"] == 4.5 and mine["allowance"]["raised"]
    events = httpx.get(f"{server.url}/api/t/sales/audit", params={"kind": "allowance_raised"}, cookies=cookies)
    assert events.status_code == 200, events.text
    raised = [e for e in events.json() if e["kind"] == "allowance_raised"]
    assert len(raised) == 1 and raised[0]["subject"] == "carol" and raised[0]["detail"]["member"] == "alice"
    shot(page, "console-allowances-raised")

    # her own: refused in words (and nothing changes)
    page.select_option("#raise-member", "carol")
    page.fill("#raise-tokens", "")
    page.fill("#raise-usd", "99")
    page.click("#raise-submit")
    expect(page.locator("#notice")).to_contain_text("Not raised: a tenant admin cannot raise their own allowance",
                                                    timeout=30_000)
    assert "bad" in (page.get_attribute("#notice", "class") or "")
    page.reload()
    assert _members(page)["carol"]["cost_limit"] == "10.0"
    # neither field: said before anything is sent
    page.fill("#raise-tokens", "")
    page.fill("#raise-usd", "")
    page.click("#raise-submit")
    expect(page.locator("#notice")).to_have_text("Give tokens a day, dollars this month or both.")
    ctx.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_members_table_fits_a_phone_and_has_no_serious_accessibility_violation(browser, server, shot,
                                                                                   viewport):
    # axe is injected as a script of its own: only this context lets it past the page's CSP.
    ctx = _context(browser, server, "carol", viewport, bypass_csp=True)
    page = ctx.new_page()
    page.goto(f"{server.url}/console/sales/usage")
    page.locator("#members").wait_for()
    assert page.evaluate(_OVERFLOW), "the usage tab scrolls sideways"
    shot(page, "console-allowances-" + ("phone" if viewport["width"] < 500 else "desktop"))
    assert serious_violations(page) == []
    # the form is operable by keyboard: the member's select, the two fields, the button
    page.focus("#raise-member")
    for expected in ("raise-tokens", "raise-usd", "raise-submit"):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == expected
    ctx.close()
