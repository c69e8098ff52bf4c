"""Chat history in real Chromium: a conversation appears in the sidebar, reopens with its messages (and its
clickable sources) after a reload, and another user's sidebar never shows it; opening someone else's link is
one audited denial and a notice; chats left without a message are not history; a user in two departments
sees which department each chat belongs to (the served app, local model, SQLite)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.browser.conftest import chat_login
from tests.browser.test_studio import TIMEOUT, _chat_until
from tests.conftest import _SCRUB, REPO, start_server, stop_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUESTION = "Hello! What can you help me with?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("history")
    # The sales pricing rules, so answers cite sources.
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(ATRIUM_DATA_DIR=str(tmp / "data"))
    done = subprocess.run([sys.executable, "-m", "backend.cli", "ingest", "--tenant", "sales",
                           str(REPO / "demo" / "corpus" / "sales" / "pricing-rules.md")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    srv = start_server(tmp)
    yield srv
    stop_server(srv)


def _denials(server, subject: str, thread_id: str) -> list[dict]:
    return [r for r in server.rows("select detail from audit_event where kind = 'denied' and subject = :s "
                                   "and route = 'chat:conversation'", s=subject) if thread_id in r["detail"]]


def _suspicious(server, subject: str) -> list[dict]:
    return server.rows("select id from audit_event where kind = 'suspicious_access' and subject = :s", s=subject)


def test_conversation_is_in_the_sidebar_and_reopens(server, browser, shot):
    ctx, page = chat_login(browser, server.url, "alice")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if not _chat_until(page, QUESTION, QUESTION):
        shot(page, "history-01-FAILED")
        raise AssertionError(page.locator("body").inner_text()[-1500:])
    # Wait for the answer: the assistant message after the question.
    page.locator('[data-step-type="assistant_message"]').first.wait_for(timeout=TIMEOUT)
    page.wait_for_function("!document.querySelector('#chat-input[disabled]')", timeout=TIMEOUT)
    rows = server.rows("select id, title from conversation where subject = 'alice'")
    assert len(rows) == 1 and rows[0]["title"] == QUESTION
    thread_id = rows[0]["id"]
    answers: list[dict] = []
    for _ in range(60):  # the final message is stored by a task Chainlit starts after it is sent
        # (until then the row holds the text streamed so far, marked interrupted in case the process dies)
        answers = server.rows("select output from conversation_step where conversation_id = :i and "
                              "type = 'assistant_message' and output != '' and output not like '%(interrupted:%'",
                              i=thread_id)
        if answers:
            break
        page.wait_for_timeout(500)
    answer = answers[0]["output"]

    # Rate it in the UI, as a user does: thumbs down, a comment, submit (Chainlit rates the answer's run).
    page.locator(".negative-feedback-off").first.click()
    page.get_by_placeholder("Your feedback...").fill("Too vague")
    page.get_by_role("button", name="Submit feedback").click()
    page.locator(".negative-feedback-on").first.wait_for(timeout=30_000)
    rated: list[dict] = []
    for _ in range(60):
        rated = server.rows("select type, feedback_comment from conversation_step where conversation_id = :i "
                            "and feedback_value = 0", i=thread_id)
        if rated:
            break
        page.wait_for_timeout(500)
    assert rated == [{"type": "run", "feedback_comment": "Too vague"}]

    page.goto(f"{server.url}/chat/")  # a new chat: the old one is in the sidebar
    link = page.locator(f'#thread-{thread_id}')
    link.wait_for(timeout=60_000)
    assert QUESTION in link.inner_text()
    shot(page, "history-02-sidebar")
    link.click()
    page.wait_for_url(re.compile(rf".*/thread/{thread_id}$"), timeout=60_000)
    page.get_by_text(QUESTION, exact=False).last.wait_for(timeout=60_000)
    page.get_by_text(answer[:40], exact=False).first.wait_for(timeout=60_000)
    page.locator(".negative-feedback-on").first.wait_for(timeout=30_000)  # the stored rating, after a reload
    shot(page, "history-03-reopened")
    assert errors == [], errors
    ctx.close()

    other_ctx, other = chat_login(browser, server.url, "bob")
    other.goto(f"{server.url}/chat/thread/{thread_id}")
    # A short notice instead of a silent new chat; one page load is one audited denial, not an alert.
    other.get_by_text("This conversation isn't available", exact=False).first.wait_for(timeout=60_000)
    other.wait_for_timeout(3000)
    assert answer[:40] not in other.locator("body").inner_text()
    assert other.locator(f'#thread-{thread_id}').count() == 0
    assert len(_denials(server, "bob", thread_id)) == 1
    assert _suspicious(server, "bob") == []
    shot(other, "history-04-other-user")

    # bob, a prompt editor, reads alice's rating in the studio.
    other.goto(f"{server.url}/studio#sales-assistant/feedback")
    item = other.locator(".feedback-item.down").first
    item.wait_for(timeout=60_000)
    assert "Too vague" in item.inner_text() and QUESTION in item.inner_text()
    assert "v1" in item.inner_text() and "alice" not in item.inner_text()
    assert other.locator("#feedback-summary tbody tr").first.inner_text().split() == ["v1", "0", "1"]
    shot(other, "history-05-studio-feedback")
    other_ctx.close()


def test_a_reopened_answer_keeps_its_clickable_sources(server, browser, shot):
    ctx, page = chat_login(browser, server.url, "carol")
    question = "Who must approve a discount of more than 20%?"
    if not _chat_until(page, question, "Sources:"):
        shot(page, "history-sources-01-FAILED")
        raise AssertionError(page.locator("body").inner_text()[-1500:])
    page.wait_for_function("!document.querySelector('#chat-input[disabled]')", timeout=TIMEOUT)
    [row] = server.rows("select id from conversation where subject = 'carol'")
    thread_id = row["id"]
    passages: list[dict] = []
    for _ in range(60):  # the answer and its panels are stored by tasks Chainlit starts after sending them
        answers = server.rows("select output from conversation_step where conversation_id = :i and "
                              "type = 'assistant_message' and output like '%Sources: [1]%'", i=thread_id)
        passages = server.rows("select name, content from conversation_element where conversation_id = :i "
                               "order by name", i=thread_id)
        if answers and len(passages) == answers[0]["output"].split("Sources: ")[1].count("["):
            break
        page.wait_for_timeout(500)
    assert passages, "no citation panel was stored"

    page.goto(f"{server.url}/chat/")
    page.locator(f"#thread-{thread_id}").click()
    page.wait_for_url(re.compile(rf".*/thread/{thread_id}$"), timeout=60_000)
    link = page.locator("a.element-link", has_text=passages[0]["name"]).first
    link.wait_for(timeout=60_000)  # a clickable source, not plain text
    link.click()
    page.locator("#side-view-content").wait_for(timeout=30_000)
    words = [w for w in re.findall(r"[A-Za-z]{4,}", passages[0]["content"])][:6]  # markdown: compare plain words
    page.wait_for_function("(words) => words.every(w => document.querySelector('#side-view-content')"
                           ".innerText.includes(w))", arg=words, timeout=30_000)
    assert page.locator("#side-view-title").inner_text().strip().endswith(passages[0]["name"])
    shot(page, "history-06-reopened-source")
    ctx.close()


def test_no_empty_chats_and_the_department_is_named_for_a_user_in_two(server, browser, shot):
    """maria (sales + finance): visiting the chat and starting new ones adds nothing to the history; her chat
    is listed with its department; switching assistant says the conversation stays in the history."""
    ctx, page = chat_login(browser, server.url, "maria")
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.reload()  # another visit, still without typing
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    assert server.rows("select id from conversation where subject = 'maria'") == []

    question = "Hello! Who are you?"
    if not _chat_until(page, question, question):
        shot(page, "history-dept-01-FAILED")
        raise AssertionError(page.locator("body").inner_text()[-1500:])
    page.locator('[data-step-type="assistant_message"]').first.wait_for(timeout=TIMEOUT)
    page.wait_for_function("!document.querySelector('#chat-input[disabled]')", timeout=TIMEOUT)
    [row] = server.rows("select id, tenant from conversation where subject = 'maria'")
    department = {"finance": "Finance", "sales": "Sales"}[row["tenant"]]
    entry = page.locator(f"#thread-{row['id']}")
    entry.wait_for(timeout=60_000)
    assert entry.inner_text().strip().startswith(f"{department} · ")

    # Another assistant: the dialog says the conversation is kept; the new chat stays empty and unlisted.
    page.locator("#chat-profiles").click()
    other = "sales/sales-assistant" if row["tenant"] == "finance" else "finance/finance-assistant"
    page.locator(f'[data-test="select-item:{other}"]').click()
    dialog = page.locator("#new-chat-dialog")
    dialog.wait_for(timeout=30_000)
    assert "stays in the history" in dialog.inner_text() and "clear" not in dialog.inner_text()
    shot(page, "history-07-switch-dialog")
    dialog.locator("#confirm").click()
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    page.reload()
    page.locator(f"#thread-{row['id']}").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator('#thread-history li[id^="thread-"]').count() == 1  # her one conversation
    assert len(server.rows("select id from conversation where subject = 'maria'")) == 1
    shot(page, "history-08-department-sidebar")
    ctx.close()
