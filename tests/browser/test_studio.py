"""The prompt studio in real Chromium, against a served app (subprocess) with a temp copy of prompts/.

A prompt editor logs in through the chat's login page, edits the sales assistant (a sign-off line that the
pipeline appends verbatim — deterministic whatever the tiny local model says), saves, reads the diff,
tries it in the playground side by side with the old version, promotes it to production, and the chat
answers with the sign-off on the next message; a conflicting save is explained; one click rolls back.
A member is refused the studio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from tests.chainlit_client import ChainlitSession
from tests.conftest import _SCRUB, REPO, start_server, stop_server
from tests.llm.fakes import make_config_dir, mock

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIGNOFF = "-- Northwind Sales Desk"
INSTRUCTION = f"Always end your answer with the exact sign-off: {SIGNOFF}"
TIMEOUT = 180_000  # ms, for model answers on a busy CI machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio")
    prompts = tmp / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    # A `smart` tier of a current cloud model (answered by LiteLLM's mock): the studio explains what its models
    # do with a temperature and an answer length.
    cfg = make_config_dir(tmp, model_list=[{"model_name": "local", "litellm_params": {"model": "local/smollm2"}},
                                           mock("smart", "anthropic/claude-sonnet-5-5", "mock answer")])
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(ATRIUM_DATA_DIR=str(tmp / "data"), ATRIUM_PROMPTS_DIR=str(prompts), ATRIUM_CONFIG_DIR=str(cfg))
    # The sales knowledge base, so the playground answers from real retrieved passages.
    docs = sorted(str(p) for p in (REPO / "demo" / "corpus" / "sales").glob("*.md"))
    done = subprocess.run([sys.executable, "-m", "backend.cli", "ingest", "--tenant", "sales", *docs], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    srv = start_server(tmp, extra_env={"ATRIUM_PROMPTS_DIR": str(prompts), "ATRIUM_CONFIG_DIR": str(cfg)})
    srv.prompts = prompts  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


def _ask_chat(url: str, cookies: dict[str, str], text: str) -> str:
    async def go() -> str:
        async with ChainlitSession(url, cookies, chat_profile="sales/sales-assistant", timeout=240) as chat:
            return (await chat.ask(text)).text

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # keep asyncio away from Playwright's loop
        return pool.submit(asyncio.run, go()).result()


def _chat_until(chat, text: str, expected: str, timeout_s: float = 240) -> bool:
    """Send `text` in the Chainlit page, once, as soon as its message box is there, and wait for `expected` in the
    conversation. (A question sent before the chat is ready is sent when it is: public/atrium.js part 15.)"""
    chat.locator("#chat-input").wait_for(timeout=60_000)
    chat.locator("#chat-input").click()
    chat.keyboard.type(text)  # typed like a person: React sees every key
    chat.keyboard.press("Enter")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if expected in chat.locator("body").inner_text():
            return True
        chat.wait_for_timeout(500)
    return False


def _turns(server) -> list[dict]:
    return server.rows("select * from chat_turn order by id")


def test_member_is_refused_the_studio(server, browser, shot):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{server.url}/studio")
    assert page.locator("h1").inner_text() == "Sign in to the Prompt Studio"
    shot(page, "studio-01-sign-in")
    page.fill("#login-username", "alice")
    page.fill("#login-password", "wrong")
    page.click("#login-submit")
    page.locator("#login-error").wait_for()
    assert "Wrong username or password" in page.locator("#login-error").inner_text()
    page.fill("#login-password", "atrium")
    page.click("#login-submit")
    page.locator("#forbidden").wait_for()
    assert "You can't edit prompts for Sales" in page.locator("#forbidden h1").inner_text()
    assert "prompt editors" in page.locator("#forbidden").inner_text()
    shot(page, "studio-02-member-refused")
    r = page.request.get(f"{server.url}/studio")
    assert r.status == 403
    page.click("#sign-out")  # the shared session ends: back to the sign-in page
    page.locator("#login-form").wait_for()
    assert page.request.get(f"{server.url}/studio").status == 401
    page.close()


def test_editor_edits_saves_diffs_tries_promotes_and_the_chat_changes(server, browser, shot):
    ctx = browser.new_context(viewport={"width": 1440, "height": 960})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Same login as the chat: Chainlit's own login page, then the studio without a second login.
    page.goto(f"{server.url}/chat/login")
    page.fill("#email", "bob")
    page.fill("#password", "atrium")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/chat/?$"), timeout=60_000)
    page.goto(f"{server.url}/studio")
    page.locator("#assistant-list button[data-assistant=sales-assistant].active").wait_for()
    page.wait_for_function("document.getElementById('body').value.includes('{{context}}')")
    assert page.locator("#assistant-title").inner_text() == "Sales Assistant"
    assert page.locator("#label-badges").inner_text().split() == ["production", "·", "v1", "staging", "·", "v1"]
    assert "Editing on top of version 1" in page.locator("#base-info").inner_text()
    shot(page, "studio-03-editor")

    # The tier's models, explained where the settings are: a current cloud model ignores the temperature and
    # thinks within the answer length; the built-in model uses both as set.
    assert page.locator("#temperature-note").is_hidden() and page.locator("#max_tokens-note").is_hidden()
    page.select_option("#f-tier", "smart")
    assert "claude-sonnet-5-5" in page.locator("#temperature-note").inner_text()
    assert "thinking" in page.locator("#max_tokens-note").inner_text()
    shot(page, "studio-03b-smart-tier-notes")
    page.select_option("#f-tier", "local")
    assert page.locator("#temperature-note").is_hidden()
    assert page.locator("#dirty-state").inner_text() == "No changes"

    # Edit: one instruction in the text, the sign-off and a shorter answer length in the settings form.
    body = page.locator("#body")
    body.click()
    body.press("Control+End")
    body.type(f"\n{INSTRUCTION}\n")
    page.fill("#f-signoff", SIGNOFF)
    page.fill("#f-max_tokens", "48")
    assert page.locator("#dirty-state").inner_text() == "Unsaved changes"
    page.click("#btn-review")
    page.locator("#draft-diff table.diff").wait_for()
    assert INSTRUCTION in page.locator("#draft-diff tr.insert").last.inner_text()
    page.fill("#message", "Add the sales desk sign-off")
    shot(page, "studio-04-review-draft")

    page.click("#btn-save")
    page.locator("#toast", has_text="Saved as version 2").wait_for()
    page.locator("#draft-diff h3", has_text="Changes from version 1 to 2").wait_for()
    diff_text = page.locator("#draft-diff").inner_text()
    assert INSTRUCTION in diff_text and SIGNOFF in diff_text and "Maximum answer length" in diff_text
    assert page.locator("#dirty-state").inner_text() == "No changes"
    saved = (server.prompts / "sales" / "sales-assistant" / "v0002.md").read_text()
    assert f"signoff: {SIGNOFF}" in saved and "author: bob" in saved and INSTRUCTION in saved
    shot(page, "studio-05-saved-diff")

    # History: compare any two versions.
    page.click("#tab-btn-history")
    page.select_option("#diff-from", "1")
    page.select_option("#diff-to", "2")
    page.click("#btn-diff")
    page.locator("#diff-view table.diff").wait_for()
    assert page.locator("#diff-view tr.insert td.r", has_text=INSTRUCTION).count() == 1
    assert page.locator("#versions-table tbody tr").count() == 2
    shot(page, "studio-06-history-diff")
    page.click(".seg button[data-layout=inline]")
    assert page.locator("#diff-view tr.insert td.line", has_text=INSTRUCTION).count() == 1

    # Playground: the new version next to production, against the real pipeline.
    page.click("#tab-btn-playground")
    page.fill("#question", "What is the maximum discount a sales rep can approve?")
    page.select_option("#pg-a", "2")
    page.check("#pg-compare")
    page.select_option("#pg-b", "1")
    page.click("#btn-ask")
    cards = page.locator("#pg-results .result")
    cards.nth(0).locator(".metrics").wait_for(timeout=TIMEOUT)
    cards.nth(1).locator(".metrics").wait_for(timeout=TIMEOUT)
    answer_new = cards.nth(0).locator(".answer").inner_text()
    answer_old = cards.nth(1).locator(".answer").inner_text()
    assert answer_new.rstrip().endswith(SIGNOFF)
    assert not answer_old.rstrip().endswith(SIGNOFF)
    metrics = cards.nth(0).locator(".metrics").inner_text()
    assert "local tier" in metrics.lower() and "$" in metrics
    # the in-process model does not write answers the knowledge base covers: they are quoted (issue 21)
    assert re.search(r"ANSWER MODE\s+grounded", metrics, re.I), metrics
    assert re.search(r"TEXT READ / WRITTEN\s+\d+ / \d+ TOKENS", metrics.upper()), metrics
    sources = cards.nth(0).locator(".citations li")
    assert sources.count() > 0, "the playground answers from the sales knowledge base"
    titles = " ".join(sources.all_inner_texts()).lower()
    assert "pricing" in titles or "playbook" in titles or "objection" in titles, titles
    shot(page, "studio-07-playground-compare")
    assert not (server.prompts / "sales" / "sales-assistant" / "v0003.md").exists(), "try saves nothing"

    # Release: promote version 2 to production (with a confirmation).
    page.click("#tab-btn-release")
    page.select_option("#rel-version", "2")
    page.select_option("#rel-label", "production")
    page.click("#btn-promote")
    page.locator("#confirm[open]").wait_for()
    shot(page, "studio-08-confirm-promote", full_page=False)
    page.click("#confirm-ok")
    page.locator("#toast", has_text="production now points to version 2").wait_for()
    page.locator(".label-card.production .lver", has_text="Version 2").wait_for()
    history_row = page.locator("#history-table tbody tr").first.inner_text()
    assert "bob" in history_row and "v1 → v2" in history_row
    shot(page, "studio-09-release")

    # The chat, in the browser: the next message uses production = version 2.
    chat = ctx.new_page()
    chat.goto(f"{server.url}/chat/")
    if not _chat_until(chat, "What is the maximum discount a sales rep can approve?", SIGNOFF):
        shot(chat, "studio-10-chat-FAILED")
        raise AssertionError(f"no sign-off in the chat:\n{chat.locator('body').inner_text()[-1500:]}")
    shot(chat, "studio-10-chat-with-new-prompt")
    turn = _turns(server)[-1]
    assert (turn["prompt_name"], turn["prompt_version"], turn["channel"]) == ("sales-assistant", 2, "ui")
    chat.close()

    # A conflicting save: carol saves version 3 while bob's draft is open.
    page.click("#tab-btn-edit")
    page.fill("#f-signoff", SIGNOFF + " (EMEA)")
    page.fill("#message", "EMEA sign-off")
    carol = httpx.post(f"{server.url}/chat/login", data={"username": "carol", "password": "atrium"}).cookies
    api = f"{server.url}/api/t/sales/prompts/sales-assistant"
    v2 = httpx.get(f"{api}/versions/2", cookies=carol).json()
    r = httpx.post(f"{api}/versions", cookies=carol, json={
        "body": v2["body"] + "Mention the quote number when there is one.\n", "config": v2["config"],
        "message": "Quote numbers", "base_version": 2})
    assert r.status_code == 201
    page.click("#btn-save")
    page.locator("#conflict").wait_for()
    assert "carol saved version 3" in page.locator("#conflict").inner_text()
    page.click("#btn-conflict-compare")
    page.locator("#draft-diff h3", has_text="Version 3 (theirs)").wait_for()
    shot(page, "studio-11-conflict")
    assert page.locator("#f-signoff").input_value() == SIGNOFF + " (EMEA)", "the draft is kept"
    assert not (server.prompts / "sales" / "sales-assistant" / "v0004.md").exists()

    # One-click rollback of production to the previous version; the chat follows on the next message.
    page.click("#tab-btn-release")
    assert page.locator("#btn-rollback").inner_text() == "Roll back to version 1"
    page.click("#btn-rollback")
    page.click("#confirm-ok")
    page.locator(".label-card.production .lver", has_text="Version 1").wait_for()
    shot(page, "studio-12-rolled-back")
    cookies = {c["name"]: c["value"] for c in ctx.cookies() if c["name"].startswith("access_token")}
    answer = _ask_chat(server.url, cookies, "Hello again.")
    assert answer.strip() and SIGNOFF not in answer
    assert _turns(server)[-1]["prompt_version"] == 1
    assert errors == [], errors
    ctx.close()


def test_approval_rule_is_explained_before_anyone_clicks(server, browser, shot):
    """Finance requires approval: an editor cannot move production, and says so on the page."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login("frank").items()])
    page = ctx.new_page()
    page.goto(f"{server.url}/studio#finance-assistant/release")
    page.locator(".label-card.production .lver", has_text="Version 1").wait_for()
    assert "Approval required" in page.locator(".sidebar .note").inner_text()
    page.select_option("#rel-label", "staging")
    page.select_option("#rel-label", "production")
    preview = page.locator("#rel-preview").inner_text()
    assert "Only a tenant admin can move production" in preview
    assert page.locator("#btn-promote").is_disabled()
    shot(page, "studio-13-approval-required")
    ctx.close()


def test_a_test_run_cannot_be_started_on_a_tier_that_is_not_available(server, browser, shot):
    """The fast tier has no model here: a run on it would be answered by another tier and measure the wrong model,
    so the Tests tab offers it greyed out, named as not available."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login("bob").items()])
    page = ctx.new_page()
    page.goto(f"{server.url}/studio#sales-assistant/tests")
    page.locator("#tab-tests:not([hidden])").wait_for()
    fast, smart = page.locator("#run-tier option[value=fast]"), page.locator("#run-tier option[value=smart]")
    assert fast.is_disabled() and "(not available now)" in fast.inner_text()
    assert smart.is_enabled() and "not available" not in smart.inner_text()
    ctx.close()
