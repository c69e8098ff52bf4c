"""A member's room in the chat, in real Chromium (the served app: SQLite, mock smart and local models, Sales with
`on_budget: downgrade` and a member allowance of 50,000 tokens a day and $1.00 a month).

- alice has used 85% of her month: her answer (on smart, the tier routed) ends with the quiet line, in italics,
  saying how much she has used and when it resets;
- bob's month is spent down to less than a smart answer: the local model answers, and the answer says so once, in
  bold, with why and when his allowance resets; the usage report counts that downgrade;
- carol's tokens for today are spent: nothing fits, so the chat says clearly that her allowance is used and when it
  resets — and no model answers.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.browser.served import seed_turns
from tests.browser.test_chat_quiet import ANSWER_STEP, _idle, _sign_in
from tests.conftest import REPO, start_server, stop_server
from tests.llm.conftest import NO_QUOTAS
from tests.llm.fakes import make_config_dir, mock, set_tenant

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 180_000
SMART, LOCAL = "Hello from the smart tier.", "Hello from the local tier."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chat-budget")
    prompts = tmp / "prompts"  # the Sales assistant on smart (the demo prompt's tier is local)
    shutil.copytree(REPO / "prompts", prompts)
    version = prompts / "sales" / "sales-assistant" / "v0001.md"
    version.write_text(version.read_text().replace("tier: local", "tier: smart", 1))
    cfg = make_config_dir(tmp, model_list=[mock("smart", "anthropic/claude-sonnet-5-5", SMART),
                                           mock("local", "openai/gpt-4o-mini", LOCAL)],
                          quotas=NO_QUOTAS, policy={"allowed_tiers": ["smart", "local"], "default_tier": "smart"})
    set_tenant(cfg, "sales", quotas={"on_budget": "downgrade",
                                     "member": {"tokens_per_day": 50_000, "monthly_budget_usd": 1.0}})
    srv = start_server(tmp, {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_PROMPTS_DIR": str(prompts)})
    _seed(srv)
    yield srv
    stop_server(srv)


def _seed(server) -> None:  # noqa: ANN001
    """What each member used earlier today (before their first call: the quota counters start from SQL)."""
    seed_turns(server, [{"subject": who, "prompt_tokens": tokens, "cost_usd": cost}
                        for who, tokens, cost in (("alice", 100, 0.85), ("bob", 100, 0.99995), ("carol", 50_000, 0.0))],
               tenant="sales", assistant="sales-assistant", allowance="default", model="anthropic/claude-sonnet-5-5",
               tier="smart")


def _ask(browser, server, user: str, message: str):  # noqa: ANN001, ANN202
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    _sign_in(page, server.url, user)
    # Sent once, at once: a question sent before the chat is ready is sent when it is (public/atrium.js part 15).
    page.locator("#chat-input").click()
    page.keyboard.type(message)
    page.keyboard.press("Enter")
    page.locator('[data-step-type="user_message"]').first.wait_for(timeout=60_000)
    return ctx, page


def _answer(page):  # noqa: ANN001, ANN202
    page.wait_for_function(f"document.querySelectorAll('{ANSWER_STEP}').length >= 1", timeout=TIMEOUT)
    _idle(page)
    return page.locator(ANSWER_STEP).last


def _look(locator) -> tuple[str, bool]:  # noqa: ANN001
    """How the element holding a line is drawn: its font style, and whether it is bold."""
    style = "e => [getComputedStyle(e).fontStyle, parseInt(getComputedStyle(e).fontWeight) >= 600]"
    return tuple(locator.evaluate(style))


def _next_month(now: datetime) -> str:
    return (now.replace(day=1) + timedelta(days=32)).replace(day=1).strftime("%Y-%m-%d")


def test_a_quiet_line_when_a_members_share_runs_low(browser, server, shot):
    ctx, page = _ask(browser, server, "alice", "Hello!")
    answer = _answer(page)
    answer.get_by_text(SMART).wait_for(timeout=TIMEOUT)
    line = (f"You have used 85% of your monthly allowance of $1.00 in Sales (resets on "
            f"{_next_month(datetime.now(UTC))}).")
    quiet = answer.get_by_text("You have used 85%")
    quiet.wait_for(timeout=TIMEOUT)
    assert quiet.inner_text().strip() == line
    assert _look(quiet) == ("italic", False)  # the quiet line: italic, not bold
    assert "instead of" not in answer.inner_text()  # answered on the tier routed
    shot(page, "chat-budget-low")
    ctx.close()


def test_a_spent_share_is_answered_on_a_cheaper_tier_saying_so_once(browser, server, shot):
    ctx, page = _ask(browser, server, "bob", "Hello!")
    answer = _answer(page)
    answer.get_by_text(LOCAL).wait_for(timeout=TIMEOUT)
    # The note may be drawn a moment after the answer's words: wait for it before counting.
    answer.get_by_text("Answered by the local tier instead of smart").first.wait_for(timeout=TIMEOUT)
    text = answer.inner_text()
    assert SMART not in text
    assert text.count("Answered by the local tier instead of smart") == 1, text
    clear = answer.get_by_text("Answered by the local tier instead of smart")
    assert clear.count() == 1
    assert _look(clear)[1], "the downgrade's line is the clear one: bold"
    said = clear.inner_text()
    assert "of your monthly allowance of $1.00 in Sales remain" in said, said
    assert f"wait until it resets on {_next_month(datetime.now(UTC))} (00:00 UTC)" in said, said
    shot(page, "chat-budget-downgraded")
    # The usage report counts it: one answer on local instead of smart, because a member's allowance was spent.
    report = httpx.get(f"{server.url}/api/t/sales/usage", cookies=server.login("carol"), timeout=30).json()
    assert report["totals"]["downgraded"] == 1
    assert report["downgrades"] == [{"from_tier": "smart", "to_tier": "local", "reason": "member_monthly_budget_usd",
                                     "answers": 1, "level": "member"}]
    ctx.close()


def test_a_spent_share_with_nothing_cheaper_that_fits_is_said_clearly_with_when_it_resets(browser, server, shot):
    ctx, page = _ask(browser, server, "carol", "Hello!")
    said = page.get_by_text(re.compile(r"You have used your allowance of 50,000 tokens for today in Sales"))
    said.first.wait_for(timeout=TIMEOUT)
    _idle(page)
    text = said.first.inner_text()
    reset = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert f"it resets at {reset} 00:00 UTC" in text, text
    assert "A tenant admin of Sales can raise it for this month" in text
    body = page.locator("main, body").first.inner_text()
    assert SMART not in body and LOCAL not in body  # no model answered
    assert _look(page.get_by_text("Sorry.", exact=True).first)[1]  # the clear line: bold, not a quiet italic one
    shot(page, "chat-budget-spent")
    ctx.close()
