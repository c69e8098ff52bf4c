"""The studio's Tests tab and release gate in real Chromium, against a served app whose tiers answer through LiteLLM's
mock_response (scripted: `local` answers right, `fast` answers wrong, `smart` answers in Markdown with raw HTML in it).

An editor writes a case, runs production and a draft on the real knowledge base (the sales pricing rules), reads each
case's checks in plain words, compares the runs side by side, saves the draft, sees the release gate block it naming
the case, fixes the prompt, runs it again, and promotes it. A rated answer in the chat becomes a case in one click.
The fixes for first-time editors: answers rendered as the chat renders them (safely), promoting defaults to staging,
plain words for tiers, tokens, the version's summary and the variables. Screenshots at desktop and phone width.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
import yaml

from tests.browser.conftest import chat_login, serious_violations
from tests.browser.served import studio_server
from tests.browser.test_studio import _chat_until
from tests.llm.fakes import make_config_dir, mock

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 120_000
QUESTION = "What discount can an Account Executive approve on their own?"
GOOD = "**Up to 10%**: the Account Executive may approve on their own [1]."
BAD = "Account Executives may approve **up to 20%** on their own [1]."
MARKDOWN = ("**Bold claim** and *emphasis*.\n\n- first point\n- second point\n\n"
            "<img src=x onerror=\"document.title='pwned'\"> [click](javascript:alert(1)) [docs](https://example.com/x)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio-tests")
    cfg = make_config_dir(tmp, model_list=[mock("local", "openai/gpt-4o-mini", GOOD),
                                           mock("fast", "openai/gpt-4o-mini", BAD),
                                           mock("smart", "openai/gpt-4o", MARKDOWN)],
                          answers={t: {"mode": "generative", "grounding_check": False}
                                   for t in ("local", "fast", "smart")})
    tenants = yaml.safe_load((cfg / "tenants.yaml").read_text())
    for t in tenants["tenants"]:
        t["release_gate"] = {"enabled": t["id"] == "sales", "min_score": None}
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(tenants, sort_keys=False))
    with studio_server(tmp, cfg) as srv:
        yield srv


def _page(browser, server, user: str, *, width: int = 1366, height: int = 900, axe: bool = False):
    ctx = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=axe)
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login(user).items()])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return ctx, page


def _open(page, server, tab: str, assistant: str = "sales-assistant") -> None:
    page.goto(f"{server.url}/studio#{assistant}/{tab}")
    page.locator(f"#assistant-list button[data-assistant={assistant}].active").wait_for()
    page.locator(f"#tab-{tab}:not([hidden])").wait_for()


def _runs(server, user: str = "bob") -> list[dict]:
    r = httpx.get(f"{server.url}/api/t/sales/evals/sales-assistant/runs", cookies=server.login(user))
    return r.json()["runs"]


def _run(page, what: str, tier: str = "") -> None:
    """Start a run from the Tests tab and wait until the progress bar says it finished."""
    page.select_option("#run-what", what)
    page.select_option("#run-tier", tier)
    before = len(page.locator("#runs-table tbody tr[data-run]").all())
    page.click("#btn-run")
    page.wait_for_function(f"document.querySelectorAll('#runs-table tbody tr[data-run]').length > {before}",
                           timeout=TIMEOUT)
    page.wait_for_function("document.getElementById('run-progress-text').textContent.startsWith('Finished')",
                           timeout=TIMEOUT)
    assert page.locator("#run-bar").evaluate("b => b.value === b.max")
    page.locator("#run-view .result-case").first.wait_for()


def _release(page, version: int) -> None:
    page.click("#tab-btn-release")
    page.select_option("#rel-version", str(version))
    page.select_option("#rel-label", "production")
    page.wait_for_function("!document.getElementById('gate').hidden && "
                           "!document.getElementById('gate-state').textContent.startsWith('Checking')")


def _save(page, message: str) -> None:
    page.click("#tab-btn-edit")
    page.fill("#message", message)
    page.click("#btn-save")
    page.locator("#toast", has_text="Saved as version").wait_for()


def test_write_a_case_run_compare_see_the_gate_block_then_pass(server, browser, shot):
    ctx, page = _page(browser, server, "bob")
    _open(page, server, "tests")
    page.locator("#case-list li").first.wait_for()
    assert "No test cases yet" in page.locator("#case-list").inner_text()
    # Nothing edited yet: the run starts from production, and the draft says it is only the editor's saved text.
    assert page.locator("#run-what").input_value() == "1"
    assert page.locator("#run-what option[value=draft]").inner_text() == "The editor's text (no unsaved changes)"

    # Write a case.
    page.click("#btn-add-case")
    assert page.evaluate("document.activeElement.id") == "c-question"
    page.fill("#c-question", QUESTION)
    page.fill("#c-facts", "10%")
    page.fill("#c-must-not", "20%")
    page.fill("#c-note", "the discount authority table")
    page.click("#btn-save-case")
    page.locator(".case-item").first.wait_for()
    assert page.locator("#cases-title").inner_text() == "Test cases (1)"
    item = page.locator(".case-item").first.inner_text()
    assert QUESTION in item and "A good answer states “10%”; never says “20%”." in item

    # Production (v1, the built-in tier: right answers), then the editor's draft on the fast model (wrong ones).
    _run(page, "1")
    result = page.locator("#run-view .result-case").first
    assert "Passed" in result.locator("summary").inner_text()
    assert result.get_attribute("open") is None  # a passing case folds away: the failures are what to read
    result.locator("summary").click()
    checks = result.locator(".checks-list").inner_text()
    assert "Stated the expected facts" in checks and "Said nothing it must not" in checks
    assert result.locator(".answer strong", has_text="Up to 10%").count() == 1  # rendered, not **raw**
    assert "1 of 1 passed (100%)" in page.locator(".run-summary").inner_text()
    shot(page, "studio-tests-01-production-passes")

    page.click("#tab-btn-edit")
    page.select_option("#f-tier", "fast")
    page.click("#tab-btn-tests")
    assert page.locator("#run-what option[value=draft]").inner_text() == "Your unsaved changes (from the editor)"
    _run(page, "draft")
    result = page.locator("#run-view .result-case").first
    assert "Failed" in result.locator("summary").inner_text()
    checks = result.locator(".checks-list").inner_text()
    assert "Missed an expected fact" in checks and "Said something it must not" in checks
    assert "missing: 10%" in checks and "contains '20%'" in checks
    # The runs table names the model as the tier menus do (the technical name is the hint).
    assert page.locator("#runs-table tbody tr[data-run]").first.locator("td").nth(2).inner_text() == "Fast cloud model"

    # Compare: production's run before, the draft's after; the changed case with both answers.
    runs = _runs(server)
    draft_run = next(r for r in runs if r["prompt_version"] is None)
    prod_run = next(r for r in runs if r["prompt_version"] == 1)
    page.select_option("#cmp-a", prod_run["id"])
    page.select_option("#cmp-b", draft_run["id"])
    page.click("#btn-compare-runs")
    changed = page.locator(".changed-case.broken")
    changed.wait_for()
    assert "Now fails" in changed.inner_text() and QUESTION in changed.inner_text()
    sides = changed.locator(".side")
    assert "Up to 10%" in sides.nth(0).inner_text() and "20%" in sides.nth(1).inner_text()
    assert "1 of 1 passed" in page.locator(".compare-table").inner_text()
    shot(page, "studio-tests-02-compare")

    # Saved as v2, the gate first asks for a run, then names the case it breaks; Promote stays off.
    _save(page, "Use the fast model")
    _release(page, 2)
    assert "Not tested yet" in page.locator("#gate-state").inner_text()
    assert page.locator("#btn-promote").is_disabled()
    assert page.locator("#gate-override").is_hidden()  # bob is an editor: no override for him
    page.get_by_role("button", name="Run the tests of version 2").click()
    page.locator("#tab-tests:not([hidden])").wait_for()
    page.wait_for_function("document.getElementById('run-progress-text').textContent.startsWith('Finished')",
                           timeout=TIMEOUT)
    _release(page, 2)
    gate = page.locator("#gate").inner_text()
    assert "Breaks cases production passes" in gate and QUESTION in gate
    assert page.locator("#btn-promote").is_disabled()
    # It says what to do: running the same version again cannot help, fixing the prompt or an admin's override can.
    assert "fix the prompt in the Edit tab, save it as a new version and run its tests" in gate
    assert "ask a tenant admin of your department to promote it anyway" in gate
    assert page.get_by_role("button", name="Run the tests of version 2").count() == 0
    shot(page, "studio-tests-03-gate-blocks")
    # The API refuses it too (the card only explains).
    r = httpx.put(f"{server.url}/api/t/sales/prompts/sales-assistant/labels/production", cookies=server.login("bob"),
                  json={"version": 2})
    assert r.status_code == 409 and r.json()["failing"][0]["question"] == QUESTION

    # Fixed: back to the built-in model, saved as v3, tested, and promoted.
    page.get_by_role("button", name="Fix the prompt").click()
    page.locator("#tab-edit:not([hidden])").wait_for()
    page.select_option("#f-tier", "local")
    _save(page, "Back to the built-in model")
    page.click("#tab-btn-tests")
    _run(page, "3")
    assert "Passed" in page.locator("#run-view .result-case").first.inner_text()
    _release(page, 3)
    assert "Tests passed" in page.locator("#gate-state").inner_text()
    page.get_by_role("button", name="See the test run").wait_for()
    assert page.locator("#btn-promote").is_enabled()
    shot(page, "studio-tests-04-gate-passes")
    page.click("#btn-promote")
    page.click("#confirm-ok")
    page.locator("#toast", has_text="production now points to version 3").wait_for()
    page.locator("#label-badges", has_text="production · v3").wait_for()  # the page reloads the labels after
    assert page.errors == []  # type: ignore[attr-defined]
    ctx.close()


def test_the_tests_tab_at_phone_width_and_for_assistive_technology(server, browser, shot):
    ctx, page = _page(browser, server, "carol", width=390, height=844, axe=True)
    _open(page, server, "tests")
    page.locator(".case-item").first.wait_for()
    page.locator("#runs-table tbody tr[data-run]").first.wait_for()
    page.locator("#runs-table tbody tr[data-run] button", has_text="Results").first.click()
    page.locator("#run-view .result-case").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#tab-btn-feedback").bounding_box()  # every tab on screen: they wrap, none scrolls away
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    shot(page, "studio-tests-05-phone")
    assert serious_violations(page) == []
    # Keyboard: the tabs move with the arrow keys, the case editor opens from the keyboard and takes the focus.
    page.focus("#tab-btn-tests")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-btn-release"
    page.keyboard.press("ArrowLeft")
    page.focus("#btn-add-case")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "c-question"
    page.click("#btn-cancel-case")

    # A tenant admin sees the gate's override where the gate is closed (v2 breaks the case).
    page.click("#tab-btn-release")
    page.select_option("#rel-version", "2")
    page.select_option("#rel-label", "production")
    page.locator("#gate-override:not([hidden])").wait_for()
    assert page.locator("#btn-promote").is_disabled()
    assert page.locator("#btn-override").is_disabled()  # a reason first
    assert "Or promote it anyway with a reason below." in page.locator("#gate").inner_text()
    page.fill("#gate-reason", "Checked with the pricing team")
    assert page.locator("#btn-override").is_enabled() and page.locator("#btn-promote").is_disabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "studio-tests-06-phone-gate-override")
    assert serious_violations(page) == []
    page.click("#btn-override")
    page.click("#confirm-ok")
    page.locator("#label-badges", has_text="production · v2").wait_for()
    assert page.locator("#gate").is_hidden()
    ctx.close()


def test_first_time_editor_fixes_markdown_answers_staging_default_and_plain_words(server, browser, shot):
    ctx, page = _page(browser, server, "bob", axe=True)
    _open(page, server, "edit", "deal-desk")
    # The version's description is named for what it is; the assistant's own description is another field.
    page.locator("#assistant-desc-quote", has_text="Drafts quotes").wait_for()  # filled once the detail is in
    settings = page.locator(".settings-col").inner_text()
    assert "Summary of this prompt (for editors)" in settings
    assert "never to users" in settings
    assert "(“Drafts quotes and checks discounts against policy.”, under the title above)" in settings
    # Tiers in plain words with the technical name as the hint; tokens explained; variables explained.
    assert page.locator("#f-tier option[value=local]").inner_text() == "Built-in model: free, basic answers (local)"
    assert "Smart cloud model" in page.locator("#f-tier option[value=smart]").inner_text()
    assert "model tier" in page.locator("#tier-hint").inner_text()
    page.fill("#f-max_tokens", "400")
    assert "400 tokens ≈ 300 words" in page.locator("#max_tokens-hint").inner_text()
    assert page.locator("#max_tokens-hint abbr").get_attribute("title").startswith("tokens: the pieces of text")
    hint = page.locator("#variables-hint").inner_text()
    assert "Blanks Atrium fills in before every answer" in hint and "write them as {{name}}" in hint
    assert "{{context}} is how the assistant reads the knowledge base" in hint
    assert page.get_by_role("group", name="Variables").count() == 1

    # Promoting defaults to staging.
    page.click("#tab-btn-release")
    assert page.locator("#rel-label").input_value() == "staging"
    assert page.locator("#gate").is_hidden()  # only production is gated

    # The playground renders Markdown as the chat does, and raw HTML or a javascript: link as plain text.
    page.click("#tab-btn-edit")
    page.select_option("#f-tier", "smart")
    page.click("#tab-btn-playground")
    page.select_option("#pg-a", "draft")
    page.fill("#question", "Summarise the discount rules")
    page.click("#btn-ask")
    answer = page.locator("#pg-results .result .answer")
    answer.locator("strong").wait_for(timeout=TIMEOUT)
    assert answer.locator("strong").inner_text() == "Bold claim" and answer.locator("em").inner_text() == "emphasis"
    assert answer.locator("li").all_inner_texts() == ["first point", "second point"]
    assert answer.locator("img").count() == 0 and "<img src=x" in answer.inner_text()
    assert answer.locator("a").count() == 1
    assert answer.locator("a").get_attribute("href") == "https://example.com/x"
    assert answer.locator("a").get_attribute("rel") == "noopener noreferrer"
    assert "[click](javascript:alert(1))" in answer.inner_text()
    assert page.title() != "pwned"
    # The rest of what the chat renders: headings (below the page's own), code, quotes, tables, numbered lists.
    shape = page.evaluate("""() => {
      const box = document.createElement('div');
      window.StudioMarkdown.render(box, '# Rules\\n\\n```\\n<b>x</b> **y**\\n```\\n\\n> quoted `code`\\n\\n' +
        '| Tier | Limit |\\n|---|---|\\n| AE | **10%** |\\n\\n3. third\\n4. fourth\\n   - nested');
      return {h: box.querySelector('.md-h').tagName, pre: box.querySelector('pre code').textContent,
              bold: box.querySelectorAll('pre b, pre strong').length,
              quote: box.querySelector('blockquote code').textContent,
              cells: [...box.querySelectorAll('td')].map(c => c.innerHTML), th: box.querySelector('th').scope,
              start: box.querySelector('ol').start, nested: box.querySelector('ol li ul li').textContent};
    }""")
    assert shape == {"h": "H4", "pre": "<b>x</b> **y**", "bold": 0, "quote": "code",
                     "cells": ["AE", "<strong>10%</strong>"], "th": "col", "start": 3, "nested": "nested"}
    metrics = page.locator("#pg-results .metrics").inner_text()
    assert "Smart cloud model (smart tier)" in metrics and "tokens" in metrics.lower()
    shot(page, "studio-tests-07-playground-markdown")
    assert serious_violations(page, exclude=("#body",)) == []
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "studio-tests-08-playground-phone")
    assert page.errors == []  # type: ignore[attr-defined]
    ctx.close()


def test_a_rated_answer_becomes_a_test_case_in_one_click(server, browser, shot):
    chat_ctx, chat = chat_login(browser, server.url, "alice")
    assert _chat_until(chat, QUESTION, "may approve")  # production answers (v2 since the override: fast)
    chat.wait_for_function("!document.querySelector('#chat-input[disabled]')", timeout=TIMEOUT)
    chat.locator(".negative-feedback-off").first.click()
    chat.get_by_placeholder("Your feedback...").fill("It should say who approves more than 10%")
    chat.get_by_role("button", name="Submit feedback").click()
    chat.locator(".negative-feedback-on").first.wait_for(timeout=30_000)
    chat_ctx.close()

    ctx, page = _page(browser, server, "bob")
    before = len(httpx.get(f"{server.url}/api/t/sales/evals/sales-assistant/cases",
                           cookies=server.login("bob")).json()["cases"])
    _open(page, server, "feedback")
    button = page.get_by_role("button", name="Make a test case of: " + QUESTION)
    for _ in range(60):  # the rating is stored by a task Chainlit starts after the click
        if button.count():
            break
        page.wait_for_timeout(500)
        page.click("#tab-btn-feedback")
    # The rated answer reads as the chat showed it: Markdown rendered, not raw stars.
    rated = page.locator(".feedback-item", has_text=QUESTION).first
    # Production answers on whichever tier the earlier tests of this module left it, so the words vary: the item
    # shows as many bold runs as the stored answer (the report's newest item, the one drawn first) has, none raw.
    report = httpx.get(f"{server.url}/api/t/sales/feedback", params={"assistant": "sales-assistant"},
                       cookies=server.login("bob")).json()
    answer = next(i["answer"] for i in report["items"] if i["question"].startswith(QUESTION[:40]))
    bold = re.findall(r"\*\*[^*\n]+\*\*", answer)
    assert rated.locator(".answer strong").count() == len(bold) and "**" not in rated.inner_text(), answer
    shot(page, "studio-tests-09a-feedback-rendered")
    button.first.click()
    page.locator("#tab-tests:not([hidden])").wait_for()
    page.locator("#case-editor:not([hidden])").wait_for()
    # Nothing is stored until Save: an editor who looks and goes elsewhere leaves no empty case behind.
    assert len(httpx.get(f"{server.url}/api/t/sales/evals/sales-assistant/cases",
                         cookies=server.login("bob")).json()["cases"]) == before
    assert page.locator("#c-question").input_value() == QUESTION
    assert "It should say who approves more than 10%" in page.locator("#c-note").input_value()
    assert page.evaluate("document.activeElement.id") == "c-facts"  # what the right answer says comes next
    page.fill("#c-facts", "10%\nSales Manager")
    shot(page, "studio-tests-09-case-from-feedback")
    page.click("#btn-save-case")
    page.locator("#case-editor[hidden]").wait_for(state="attached")
    cases = httpx.get(f"{server.url}/api/t/sales/evals/sales-assistant/cases", cookies=server.login("bob")).json()
    assert len(cases["cases"]) == before + 1
    made = next(c for c in cases["cases"] if c.get("source"))
    assert made["facts"] == ["10%", "Sales Manager"] and made["source"]["kind"] == "feedback"
    # Made again, then cancelled: Cancel does not leave an empty case behind.
    page.click("#tab-btn-feedback")
    button.first.click()
    page.locator("#case-editor:not([hidden])").wait_for()
    assert page.locator("#case-editor-title").inner_text() == "New case from a rating"
    page.click("#tab-btn-edit")  # away, and back: still nothing stored
    page.click("#tab-btn-tests")
    assert len(httpx.get(f"{server.url}/api/t/sales/evals/sales-assistant/cases",
                         cookies=server.login("bob")).json()["cases"]) == before + 1
    page.click("#btn-cancel-case")
    page.locator("#toast", has_text="The case from the rating was not kept.").wait_for()
    assert len(httpx.get(f"{server.url}/api/t/sales/evals/sales-assistant/cases",
                         cookies=server.login("bob")).json()["cases"]) == before + 1
    assert page.errors == []  # type: ignore[attr-defined]
    ctx.close()


def test_cases_are_imported_exported_edited_and_deleted_from_the_tab(server, browser, shot, tmp_path):
    ctx, page = _page(browser, server, "bob")
    _open(page, server, "tests", "deal-desk")
    page.locator("#case-list li").first.wait_for()
    upload = tmp_path / "deal-desk.yaml"
    upload.write_text(yaml.safe_dump({"assistant": "deal-desk", "cases": [
        {"id": "growth-price", "question": "What is the list price of the Growth plan?", "facts": ["Growth"]},
        {"id": "eng-question", "question": "How do canary deploys work?", "must_refuse": True,
         "note": "another department's"}]}))
    page.set_input_files("#import-cases", str(upload))
    page.locator("#toast", has_text="Imported: 2 added, 0 updated, 0 unchanged.").wait_for()
    page.locator("#cases-title", has_text="Test cases (2)").wait_for()
    assert "says it does not know" in page.locator(".case-item[data-case=eng-question]").inner_text()

    exported = page.request.get(server.url + page.locator("#btn-export-cases").get_attribute("href"))
    assert exported.status == 200 and "growth-price" in exported.text() and "canary" in exported.text()
    assert page.locator("#btn-export-cases").get_attribute("download") == "deal-desk-tests.yaml"

    page.get_by_role("button", name="Edit case: What is the list price of the Growth plan?").click()
    assert page.locator("#case-editor-title").inner_text() == "Edit case"
    page.fill("#c-facts", "Growth\n$12")
    page.click("#btn-save-case")
    page.locator("#toast", has_text="Case saved.").wait_for()
    page.locator(".case-item[data-case=growth-price]", has_text="“$12”").wait_for()

    page.get_by_role("button", name="Delete case: How do canary deploys work?").click()
    page.click("#confirm-ok")
    page.locator("#cases-title", has_text="Test cases (1)").wait_for()
    shot(page, "studio-tests-10-cases-edited")

    # A file with a mistake is refused whole, saying what to fix; nothing changes.
    upload.write_text("assistant: deal-desk\ncases:\n  - question: Who approves?\n    fact: [x]\n")
    page.set_input_files("#import-cases", str(upload))
    page.locator("#toast.bad", has_text="Not imported").wait_for()
    assert page.locator("#cases-title").inner_text() == "Test cases (1)"
    assert page.errors == []  # type: ignore[attr-defined]
    ctx.close()


def test_the_gate_offers_to_run_production_when_only_production_lacks_a_run(server, browser, shot):
    """A version tested while production never was: the card asks for production's run, with a button for it."""
    base, bob = f"{server.url}/api/t/sales", server.login("bob")
    r = httpx.post(f"{base}/evals/deal-desk/cases", cookies=bob, json={"question": QUESTION, "facts": ["10%"]})
    assert r.status_code == 201, r.text
    latest = max(v["version"] for v in httpx.get(f"{base}/prompts/deal-desk", cookies=bob).json()["versions"])
    body = httpx.get(f"{base}/prompts/deal-desk/versions/1", cookies=bob).json()
    r = httpx.post(f"{base}/prompts/deal-desk/versions", cookies=bob,
                   json={"body": body["body"], "config": body["config"], "message": "same words, tested",
                         "base_version": latest})
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    run = httpx.post(f"{base}/evals/deal-desk/runs", cookies=bob, json={"version": version}).json()
    for _ in range(240):
        if httpx.get(f"{base}/evals/deal-desk/runs/{run['id']}", cookies=bob).json()["status"] == "finished":
            break
        time.sleep(0.5)
    ctx, page = _page(browser, server, "bob")
    _open(page, server, "release", "deal-desk")
    _release(page, version)
    assert "Production not tested yet" in page.locator("#gate-state").inner_text()
    page.get_by_role("button", name="Run the tests of production (version 1)").click()
    page.locator("#tab-tests:not([hidden])").wait_for()
    page.wait_for_function("document.getElementById('run-progress-text').textContent.startsWith('Finished')",
                           timeout=TIMEOUT)
    assert any(r["prompt_version"] == 1 for r in
               httpx.get(f"{base}/evals/deal-desk/runs", cookies=bob).json()["runs"])
    assert page.errors == []  # type: ignore[attr-defined]
    ctx.close()
