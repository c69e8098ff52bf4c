"""The prompt studio in real Chromium: what a user review found, each checked where only the page shows it.

Drafts belong to the person and the tab that wrote them (a second person on the same browser never gets them, a
second tab never adopts the first one's text, and your own save elsewhere is yours); signing out asks first, and
an ended session says so; after a save the Release and Compare choices follow the newest version; after a
rollback the card offers to undo it, not to "roll back" to the version just withdrawn; the page works at phone
width; the slider has a name; the settings' problems are all listed at once and in the form's words; the
playground says which tier really answered and marks a cut answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import httpx
import pytest

from tests.conftest import _SCRUB, REPO, start_server, stop_server
from tests.llm.fakes import make_config_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 180_000  # ms, for a model answer on a busy machine
DRAFT_KEYS = "Object.keys(sessionStorage).concat(Object.keys(localStorage))" \
             ".filter(k => k.startsWith('atrium-studio-draft:'))"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio-review")
    prompts = tmp / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    # Only the built-in model is live: smart and fast, which the Sales policy allows, are not.
    cfg = make_config_dir(tmp, model_list=[{"model_name": "local", "litellm_params": {"model": "local/smollm2"}}])
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(ATRIUM_PROMPTS_DIR=str(prompts), ATRIUM_CONFIG_DIR=str(cfg))
    srv = start_server(tmp, extra_env={"ATRIUM_PROMPTS_DIR": str(prompts), "ATRIUM_CONFIG_DIR": str(cfg)})
    srv.prompts = prompts  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


def _context(browser, server, user: str | None, **kw):
    ctx = browser.new_context(viewport=kw.pop("viewport", {"width": 1280, "height": 900}), **kw)
    if user:
        ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login(user).items()])
    return ctx


def _open(page, server, assistant: str, tab: str = "edit", path: str = "/studio") -> None:
    page.goto(f"{server.url}{path}#{assistant}/{tab}")
    _loaded(page, assistant)


def _loaded(page, assistant: str) -> None:
    page.locator(f"#assistant-list button[data-assistant={assistant}].active").wait_for()
    page.wait_for_function("document.getElementById('body').value.includes('{{context}}')")


def _detail(server, assistant: str) -> dict:
    return httpx.get(f"{server.url}/api/t/sales/prompts/{assistant}", cookies=server.login("bob")).json()


def _sign_in(page, user: str) -> None:
    """The studio's own sign-in form (it stays on the page)."""
    page.locator("#login-form").wait_for()
    page.fill("#login-username", user)
    page.fill("#login-password", "atrium")
    page.click("#login-submit")


def test_drafts_belong_to_their_author_and_their_tab(server, browser, shot):
    ctx = _context(browser, server, "bob")
    latest = _detail(server, "deal-desk")["latest"]
    tab_a = ctx.new_page()
    _open(tab_a, server, "deal-desk")
    tab_a.fill("#f-signoff", "-- from tab A")
    assert tab_a.locator("#dirty-state").inner_text() == "Unsaved changes"

    # A second tab starts from the saved version, not from tab A's live text.
    tab_b = ctx.new_page()
    _open(tab_b, server, "deal-desk")
    assert tab_b.locator("#restored").is_hidden()
    assert tab_b.locator("#f-signoff").input_value() == ""
    tab_b.fill("#f-signoff", "-- from tab B")
    tab_b.fill("#message", "tab B sign-off")

    # Tab A saves first; tab B's save is refused, and bob is told it was his own save.
    tab_a.fill("#message", "tab A sign-off")
    tab_a.click("#btn-save")
    tab_a.locator("#toast", has_text=f"Saved as version {latest + 1}").wait_for()
    tab_b.click("#btn-save")
    tab_b.locator("#conflict").wait_for()
    conflict = tab_b.locator("#conflict").inner_text()
    assert f"You saved version {latest + 1} in another tab" in conflict, conflict
    assert "Someone else" not in conflict and "bob saved" not in conflict
    shot(tab_b, "studio-review-01-own-conflict")

    # A reload of the same tab brings its own draft back.
    dialogs: list[str] = []
    tab_b.on("dialog", lambda d: (dialogs.append(d.type), d.accept()))
    tab_b.reload()
    _loaded(tab_b, "deal-desk")
    tab_b.locator("#restored").wait_for()
    assert tab_b.locator("#f-signoff").input_value() == "-- from tab B"
    assert tab_b.locator("#message").input_value() == "tab B sign-off"

    # Signing out with that draft asks in the page; confirming removes it from the browser.
    dialogs.clear()  # the reload above asked "Leave site?", as it should for a draft
    tab_b.click("#sign-out")
    tab_b.locator("#confirm[open]").wait_for()
    assert "discard" in tab_b.locator("#confirm-title").inner_text().lower()
    tab_b.click("#confirm-ok")
    tab_b.locator("#login-form").wait_for()
    assert "beforeunload" not in dialogs, "asked in the page, not by the browser after the session had ended"
    assert tab_b.evaluate(DRAFT_KEYS) == []

    # carol signs in on the same tab: nothing of bob's is offered to her, even a draft left behind by an older
    # version of the page (in localStorage, naming nobody) or one stored under bob's name.
    _sign_in(tab_b, "carol")
    _loaded(tab_b, "sales-assistant")
    planted = {"subject": "bob", "base": latest, "message": "bob wip",
               "draft": {"body": "BOB PRIVATE DRAFT {{context}}", "config": {"signoff": "-- BOB PRIVATE"}}}
    tab_b.evaluate("""(d) => {
        sessionStorage.setItem('atrium-studio-draft:bob:sales/deal-desk', JSON.stringify(d));
        localStorage.setItem('atrium-studio-draft:sales/deal-desk', JSON.stringify(d));
    }""", planted)
    tab_b.goto(f"{server.url}/studio#deal-desk/edit")
    tab_b.reload()
    _loaded(tab_b, "deal-desk")
    assert tab_b.locator("#restored").is_hidden()
    assert "BOB PRIVATE" not in tab_b.locator("#body").input_value()
    assert "BOB PRIVATE" not in tab_b.locator("#f-signoff").input_value()
    assert tab_b.locator("#message").input_value() == ""
    assert tab_b.evaluate(DRAFT_KEYS) == [], "drafts that are not carol's are dropped"
    shot(tab_b, "studio-review-02-carol-no-foreign-draft")
    ctx.close()


def test_sign_out_asks_first_and_an_ended_session_says_so(server, browser, shot):
    ctx = _context(browser, server, "bob")
    page = ctx.new_page()
    _open(page, server, "sales-assistant")
    page.fill("#f-signoff", "-- kept through a new sign-in")

    page.click("#sign-out")
    page.locator("#confirm[open]").wait_for()
    shot(page, "studio-review-03-sign-out-confirm", full_page=False)
    page.click("#confirm-cancel")
    assert page.request.get(f"{server.url}/api/me").status == 200, "Cancel keeps the session"
    assert page.locator("#f-signoff").input_value() == "-- kept through a new sign-in"

    # The session ends while the editor is open (signed out elsewhere, expired).
    ctx.clear_cookies()
    page.fill("#message", "sign-off")
    page.click("#btn-save")
    banner = page.locator("#session-ended")
    banner.wait_for()
    assert banner.inner_text().startswith(
        "Your session has ended — sign in again (your draft is kept in this browser).")
    page.locator("#toast", has_text="Not saved").wait_for()
    text = page.locator("body").inner_text()
    assert "Bearer" not in text and "Authorization" not in text and "(401)" not in text
    shot(page, "studio-review-04-session-ended")

    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.accept()))
    page.click("#sign-in-again")
    _sign_in(page, "bob")
    _loaded(page, "sales-assistant")
    page.locator("#restored").wait_for()
    assert page.locator("#f-signoff").input_value() == "-- kept through a new sign-in"
    assert page.locator("#message").input_value() == "sign-off"
    assert dialogs == [], "the draft is kept: no 'Leave site?' prompt"
    ctx.close()


def test_after_a_save_release_and_compare_follow_the_newest_and_a_rollback_can_be_undone(server, browser, shot):
    ctx = _context(browser, server, "bob")
    page = ctx.new_page()
    before = _detail(server, "sales-assistant")
    latest, prod = before["latest"], before["labels"]["production"]
    _open(page, server, "sales-assistant", "release")
    assert page.locator("#rel-version").input_value() == str(latest)
    page.click("#tab-btn-history")
    assert page.locator("#diff-to").input_value() == str(latest)

    # Only settings change: the headline counts them instead of "+0 −0 lines".
    page.click("#tab-btn-edit")
    max_tokens = int(page.locator("#f-max_tokens").input_value() or 256)
    page.fill("#f-signoff", "-- Northwind Sales Desk")
    page.fill("#f-max_tokens", str(max_tokens + 1))
    page.click("#btn-review")
    page.locator("#draft-diff .diff-stats").wait_for()
    assert page.locator("#draft-diff .diff-stats").inner_text() == "2 settings changed"
    page.fill("#message", "Sign-off and a longer answer")
    page.click("#btn-save")
    page.locator("#toast", has_text=f"Saved as version {latest + 1}").wait_for()
    page.locator("#draft-diff h3", has_text=f"to {latest + 1}").wait_for()
    assert page.locator("#draft-diff .diff-stats").inner_text() == "2 settings changed"
    shot(page, "studio-review-05-settings-only-diff")

    # The version just saved is the one Release and Compare now point at.
    page.click("#tab-btn-history")
    assert page.locator("#diff-to").input_value() == str(latest + 1)
    page.click("#tab-btn-release")
    assert page.locator("#rel-version").input_value() == str(latest + 1)
    page.select_option("#rel-label", "production")
    page.click("#btn-promote")
    page.click("#confirm-ok")
    page.locator(".label-card.production .lver", has_text=f"Version {latest + 1}").wait_for()

    rollback = page.locator("#btn-rollback")
    assert rollback.inner_text() == f"Roll back to version {prod}"
    assert "danger" in rollback.get_attribute("class")
    rollback.click()
    page.click("#confirm-ok")
    page.locator(".label-card.production .lver", has_text=f"Version {prod}").wait_for()
    # Not "Roll back to version N+1": that would re-deploy the version just withdrawn, in the red button.
    page.wait_for_function("document.getElementById('btn-rollback').textContent.startsWith('Undo')")
    assert rollback.inner_text() == f"Undo the rollback (back to version {latest + 1})"
    classes = rollback.get_attribute("class").split()
    assert "danger" not in classes and "undo" in classes
    card = page.locator("#rollback-text").inner_text()
    assert f"moved back from version {latest + 1} to version {prod}" in card and "Roll back to" not in card
    shot(page, "studio-review-06-undo-rollback")
    rollback.click()
    page.click("#confirm-ok")
    page.locator(".label-card.production .lver", has_text=f"Version {latest + 1}").wait_for()
    page.wait_for_function("document.getElementById('btn-rollback').textContent.startsWith('Roll back')")
    assert rollback.inner_text() == f"Roll back to version {prod}"
    ctx.close()


def test_settings_problems_are_all_listed_in_the_forms_words(server, browser, shot):
    ctx = _context(browser, server, "bob")
    page = ctx.new_page()
    _open(page, server, "sales-assistant")
    latest = _detail(server, "sales-assistant")["latest"]

    # The slider is named by its label (a wrapping <label> named the <output> before it instead).
    assert page.get_by_role("slider", name="Creativity (temperature)").count() == 1

    # 12.5 tokens: refused, not saved as 12.
    page.fill("#f-max_tokens", "12.5")
    page.fill("#message", "Shorter answers")
    problems = page.locator("#problems")
    assert ("Maximum answer length: 12.5 is not a whole number: use a whole number of tokens between 1 and "
            "32,000.") in problems.inner_text()
    page.click("#btn-save")
    page.locator("#toast", has_text="Not saved — 1 problem").wait_for()
    page.fill("#f-max_tokens", "99999")
    assert "99,999 is out of range: use a whole number of tokens between 1 and 32,000." in problems.inner_text()

    # An empty text and no change description: both at once, not one toast per attempt.
    page.fill("#f-max_tokens", "64")
    page.fill("#body", "")
    page.fill("#message", "")
    page.click("#btn-save")
    page.locator("#toast", has_text="Not saved — 2 problems").wait_for()
    listed = problems.inner_text()
    assert "The instructions are empty." in listed
    assert "Change description: describe your change" in listed
    assert page.locator("#message").get_attribute("aria-invalid") == "true"
    shot(page, "studio-review-07-all-problems")
    assert _detail(server, "sales-assistant")["latest"] == latest, "nothing was saved"
    ctx.close()


def test_the_playground_says_which_tier_answered_and_marks_a_cut_answer(server, browser, shot):
    ctx = _context(browser, server, "bob")
    page = ctx.new_page()
    _open(page, server, "deal-desk")
    assert page.locator("#f-tier option[value=smart]").inner_text() == \
        "Smart cloud model: best answers, costs more (smart) (not available now)"
    page.select_option("#f-tier", "smart")
    page.fill("#f-max_tokens", "4")
    page.fill("#f-signoff", "-- Deal Desk")
    page.click("#btn-try-draft")
    page.fill("#question", "Explain in detail how a discount above twenty percent gets approved.")
    page.click("#btn-ask")
    card = page.locator("#pg-results .result").first
    card.locator(".metrics").wait_for(timeout=TIMEOUT)
    notes = " ".join(card.locator(".note").all_inner_texts())
    assert re.search(r"smart is not available now: answered by local \(.+\)", notes), notes
    answer = card.locator(".answer").inner_text()
    assert "(answer cut at the length limit)" in answer, answer
    assert answer.rstrip().endswith("(answer cut at the length limit)\n\n-- Deal Desk") or \
        answer.rstrip().endswith("(answer cut at the length limit)\n-- Deal Desk"), json.dumps(answer)
    shot(page, "studio-review-08-playground-tier-and-cut")
    ctx.close()


def test_the_studio_fits_a_phone(server, browser, shot):
    ctx = _context(browser, server, "bob", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    _open(page, server, "sales-assistant")
    for tab in ("edit", "history", "playground", "release", "feedback", "edit"):
        page.locator(f"#tab-btn-{tab}").tap()  # a tap, as on a phone: fails if anything covers the tab
        assert page.locator(f"#tab-btn-{tab}").get_attribute("aria-selected") == "true"
        page.wait_for_timeout(300)  # the feedback tab loads its list
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 390:
            shot(page, f"studio-review-09-phone-{tab}-FAILED")
        assert width <= 390, f"{tab}: the page is {width}px wide"
        shot(page, f"studio-review-09-phone-{tab}")
    ctx.close()
