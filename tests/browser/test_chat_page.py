"""The chat page in real Chromium, where a user sees it: sources open only when clicked and show that one passage
(live, after a follow-up, reopened, and on a phone); attachments are refused in words and PDFs render; renaming
refuses a blank name; the header names a single assistant; the page fits a 390px screen (the served app, a
mock model, SQLite)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import chat_login, upload_ready
from tests.browser.test_studio import TIMEOUT
from tests.conftest import REPO, start_server, stop_server
from tests.llm.fakes import make_config_dir, mock

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STARTER = "What discount can a sales rep approve without a manager?"
MOCK_ANSWER = "A sales rep can approve up to 10% on their own; more needs a manager."
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # What the page does with an answer is the subject here, not the answer: a mock model answers at once (the
    # tiny local model takes seconds per answer); the passages are the real retrieval's.
    tmp = tmp_path_factory.mktemp("chat-page")
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-haiku-5-5", MOCK_ANSWER)],
                          policy={"allowed_tiers": ["fast"]})
    srv = start_server(tmp, {"ATRIUM_CONFIG_DIR": str(cfg)})
    upload_ready(srv, "sales", REPO / "demo" / "corpus" / "sales" / "pricing-rules.md")
    yield srv
    stop_server(srv)


def _idle(page) -> None:
    page.wait_for_function("!document.querySelector('#chat-input[disabled]') && "
                           "!document.querySelector('#stop-button')", timeout=TIMEOUT)


def _panels(server, thread_id: str, answers: int = 1) -> list[dict]:
    """The cited passages stored for the conversation (name = the source's label), once its answers are stored."""
    for _ in range(120):
        stored = server.rows("select output from conversation_step where conversation_id = :i and "
                             "type = 'assistant_message' and output like '%Sources: [1]%'", i=thread_id)
        panels = server.rows("select name, content, for_id from conversation_element where conversation_id = :i",
                             i=thread_id)
        if len(stored) >= answers and len(panels) == sum(a["output"].split("Sources: ")[1].count("[")
                                                         for a in stored):
            return panels
        time.sleep(0.5)
    raise AssertionError("the answer's passages were not stored")


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{5,}", text)}


def _no_side_panel(page, wait_ms: int = 2500) -> None:
    page.wait_for_timeout(wait_ms)  # Chainlit opened it right after the answer's elements arrived
    assert page.locator("#side-view-title").count() == 0
    assert page.locator("#side-view-content").count() == 0


def _open_source(page, name: str) -> str:
    """Click the source `name` of the first answer: the panel shows that passage alone, under its name; its text
    is returned."""
    page.locator("a.element-link", has_text=name).first.click()
    page.locator("#side-view-title").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert page.locator("#side-view-title").inner_text().strip().endswith(name)
    assert page.locator("#side-view-content > *").count() == 1
    return page.locator("#side-view-content").inner_text()


def test_sources_open_only_when_clicked_and_show_that_one_passage(server, browser, shot):
    ctx, page = chat_login(browser, server.url, "alice")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.locator("#starters button", has_text=STARTER).click()
    page.get_by_text("Sources:", exact=False).first.wait_for(timeout=TIMEOUT)
    _idle(page)
    _no_side_panel(page)
    shot(page, "chat-page-01-answer-no-panel")

    [row] = server.rows("select id from conversation where subject = 'alice'")
    thread_id = row["id"]
    panels = sorted(_panels(server, thread_id), key=lambda p: p["name"])
    assert len(panels) >= 2, panels
    second, others = panels[1], [p for p in panels if p is not panels[1]]
    text = _open_source(page, second["name"])
    assert _words(second["content"]) <= _words(text)
    only_elsewhere = set().union(*(_words(p["content"]) for p in others)) - _words(second["content"])
    assert not (only_elsewhere & _words(text)), only_elsewhere & _words(text)  # no other passage in it
    shot(page, "chat-page-02-source-2")

    # A follow-up while the passage is open: the panel does not fill with every passage of the chat.
    page.locator("#chat-input").click()
    page.keyboard.type("And what about more than that?")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('[data-step-type=\"assistant_message\"]').length > 1",
                           timeout=TIMEOUT)
    _idle(page)
    page.wait_for_timeout(2500)
    if page.locator("#side-view-title").count():
        assert page.locator("#side-view-content > *").count() == 1
        page.locator("#side-view-title button").click()
    _no_side_panel(page, 500)

    # Reopened: nothing opens by itself; a click shows its passage.
    page.goto(f"{server.url}/chat/")
    page.locator(f"#thread-{thread_id}").click()
    page.wait_for_url(re.compile(rf".*/thread/{thread_id}$"), timeout=60_000)
    page.locator("a.element-link").first.wait_for(timeout=60_000)
    _no_side_panel(page)
    shot(page, "chat-page-03-reopened-no-panel")
    first = panels[0]
    assert _words(first["content"]) <= _words(_open_source(page, first["name"]))
    assert errors == [], errors
    ctx.close()

    # On a phone: no sheet covers the reopened answer; a click opens the passage as a sheet.
    ctx, page = chat_login(browser, server.url, "alice", PHONE)
    page.goto(f"{server.url}/chat/thread/{thread_id}")
    page.locator("a.element-link").first.wait_for(timeout=60_000)
    _no_side_panel(page)
    assert page.locator('[role="dialog"]').count() == 0
    _assert_source_chips_flow(page)
    shot(page, "chat-page-04-phone-reopened")
    page.locator("a.element-link", has_text=second["name"]).first.scroll_into_view_if_needed()
    assert _words(second["content"]) <= _words(_open_source(page, second["name"]))
    assert page.locator('[role="dialog"]').count() == 1
    shot(page, "chat-page-05-phone-source")
    ctx.close()


def _assert_source_chips_flow(page) -> None:
    """Source chips wrap like words: every comma between two sources sits on the line where its source ends
    (as boxes, each chip took a row of its own and the commas were left on lines of their own)."""
    misplaced = page.evaluate("""() => {
        const out = [];
        for (const link of document.querySelectorAll('a.element-link')) {
            const next = link.nextSibling;
            if (!next || next.nodeType !== Node.TEXT_NODE || !next.data.startsWith(',')) continue;
            const range = document.createRange();
            range.setStart(next, 0);
            range.setEnd(next, 1);
            const comma = range.getBoundingClientRect();
            const rects = link.getClientRects();
            const end = rects[rects.length - 1];
            if (Math.abs(comma.bottom - end.bottom) > 6) out.push(link.textContent);
        }
        return out;
    }""")
    assert misplaced == [], misplaced
    width = page.viewport_size["width"]
    for box in page.locator("a.element-link").evaluate_all("els => els.map(e => e.getBoundingClientRect().right)"):
        assert box <= width + 1


def _pdf(text: str) -> bytes:
    """A valid one-page PDF with one line of text."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _toast(page, text: str) -> str:
    toast = page.locator("[data-sonner-toast]", has_text=text)
    toast.first.wait_for(timeout=30_000)
    return toast.first.inner_text()


def test_attachments_are_refused_in_words_and_pdfs_render(server, browser, shot, tmp_path):
    empty, csv, pdf, note = (tmp_path / n for n in ("empty.txt", "data.csv", "yankee.pdf", "note.txt"))
    empty.write_bytes(b"")
    csv.write_text("a,b\n1,2\n")
    pdf.write_bytes(_pdf("The Yankee bundle costs 42 dollars per seat."))
    note.write_text("Our pricing note: the Zeta plan costs 99 dollars a month.")
    turns = len(server.rows("select id from chat_turn"))
    ctx, page = chat_login(browser, server.url, "carol")
    statuses: dict[str, int] = {}
    page.on("response", lambda r: statuses.__setitem__(r.url.split("?")[0].rsplit("/", 1)[-1], r.status))
    page.locator("#upload-button").wait_for(timeout=60_000)  # a tenant admin has the paperclip
    files = page.locator("#upload-button-input")

    files.set_input_files(str(empty))
    assert _toast(page, "empty.txt") == "empty.txt is empty — nothing to add."
    assert 500 not in statuses.values(), statuses
    files.set_input_files(str(csv))
    assert _toast(page, "data.csv") == "data.csv can't be added: use .txt, .md, .pdf, .docx or .html."
    shot(page, "chat-page-06-refused-files")

    # A valid PDF with a note: added, and the note acknowledged. The file is not echoed back into the message (it
    # would be served from the upload folder, which serves nothing): the status names it.
    files.set_input_files(str(pdf))
    page.locator("#chat-input").click()
    page.keyboard.type("Adding the Yankee price sheet")
    page.locator("#chat-submit:not([disabled])").wait_for(timeout=60_000)  # once the file is uploaded
    page.keyboard.press("Enter")
    page.get_by_text("Noted.", exact=False).first.wait_for(timeout=TIMEOUT)
    page.wait_for_timeout(1500)
    body = page.locator("body").inner_text()
    assert "Failed to load" not in body and "yankee.pdf" in body and "ready" in body
    assert not [name for name in statuses if name.startswith("pdf.worker")]
    shot(page, "chat-page-07-pdf")

    files.set_input_files(str(note))
    page.locator("#chat-input").click()
    page.keyboard.type("Please add this note")
    page.locator("#chat-submit:not([disabled])").wait_for(timeout=60_000)
    page.keyboard.press("Enter")
    page.wait_for_function("document.body.innerText.split('Noted.').length > 2", timeout=TIMEOUT)
    _idle(page)
    body = page.locator("body").inner_text()
    assert "note.txt" in body and "I don't know" not in body and "ask an administrator" not in body
    assert len(server.rows("select id from chat_turn")) == turns  # nothing was asked: no model call
    assert page.locator(".positive-feedback-off").count() == 0  # status messages are not rated
    shot(page, "chat-page-08-note")
    ctx.close()


def test_renaming_refuses_a_blank_name_and_enter_confirms(server, browser, shot):
    [row] = server.rows("select id from conversation where subject = 'carol' order by created_at limit 1")
    ctx, page = chat_login(browser, server.url, "carol")
    entry = page.locator(f"#thread-{row['id']}")
    entry.wait_for(timeout=60_000)

    def rename_dialog():
        entry.hover()
        entry.locator('[id="thread-options"]').click()  # the "…" (its ARIA is on the row: atrium.js part 14)
        page.get_by_role("menuitem", name=re.compile("Rename")).click()
        field = page.locator('[role="dialog"] input#name')
        field.wait_for(timeout=10_000)
        return field, page.locator('[role="dialog"] button', has_text="Confirm")

    field, confirm = rename_dialog()
    field.fill("   ")
    assert confirm.is_disabled()
    field.press("Enter")
    page.wait_for_timeout(800)
    assert field.count() == 1  # still open: nothing was renamed
    shot(page, "chat-page-09-rename-blank")
    field.fill("Price sheets")
    assert not confirm.is_disabled()
    field.press("Enter")  # confirms, like the button
    page.wait_for_function(f"document.querySelector('#thread-{row['id']}').innerText.includes('Price sheets')",
                           timeout=30_000)
    page.locator('[role="dialog"] input#name').wait_for(state="detached", timeout=10_000)
    assert server.rows("select title from conversation where id = :i", i=row["id"]) == [{"title": "Price sheets"}]
    ctx.close()


def test_the_header_says_who_answers_and_the_page_fits_a_phone(server, browser, shot):
    # One assistant: there is no selector, so its name is shown in its place.
    ctx, page = chat_login(browser, server.url, "erin")
    label = page.locator("#atrium-assistant")
    label.wait_for(timeout=60_000)
    assert label.inner_text() == "Engineering Assistant"
    assert page.locator("#upload-button").count() == 0  # not an admin: no paperclip
    ctx.close()

    # maria (two departments) on a phone: the label is one line, cut with an ellipsis, and nothing runs off the
    # screen (the starters wrap).
    ctx, page = chat_login(browser, server.url, "maria", PHONE)
    selector = page.locator("#chat-profiles")
    selector.wait_for(timeout=60_000)
    page.locator("#starters button").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert selector.inner_text().strip().startswith(("Finance · ", "Sales · "))
    assert selector.bounding_box()["height"] <= 44
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for box in page.locator("#starters button").evaluate_all("els => els.map(e => e.getBoundingClientRect())"):
        assert box["left"] >= 0 and box["right"] <= PHONE["width"]
    shot(page, "chat-page-10-phone-header")
    ctx.close()

    # No department: the reason, and no message box to type the same question into again.
    ctx, page = chat_login(browser, server.url, "nobody")
    page.get_by_text("No access.", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    assert not page.locator("#message-composer").is_visible()
    shot(page, "chat-page-11-no-access")
    ctx.close()


def test_a_wrong_password_is_said_once_in_words(server, browser, shot):
    """Chainlit's login says a refused password twice: its form's alert ("Unable to sign in") and a toast
    ("Unauthorized: …"). The alert now says what is wrong, and the toast that repeats it is dropped."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.goto(f"{server.url}/chat/login")
    page.fill("#email", "alice")
    page.fill("#password", "not-her-password")
    page.locator("button[type=submit]").click()
    alert = page.locator("form [role=alert]")
    alert.wait_for(timeout=TIMEOUT)
    assert alert.inner_text().strip() == "Wrong username or password."
    toast = page.locator("[data-sonner-toast]", has_text="Wrong username or password")
    toast.wait_for(state="attached", timeout=TIMEOUT)  # Chainlit still raises it (for a few seconds)...
    assert toast.evaluate("t => getComputedStyle(t).display") == "none"  # ...and the page hides it at once
    assert page.get_by_text("Wrong username or password").filter(visible=True).count() == 1
    shot(page, "login-wrong-password")
    # The right password still gets in from the same page.
    page.fill("#password", "atrium")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/chat/?$"), timeout=60_000)
    ctx.close()


_UNNAMED_BUTTONS = """() => [...document.querySelectorAll('button, [role=button]')]
  .filter((b) => b.offsetParent !== null)
  .filter((b) => !(b.getAttribute('aria-label') || b.innerText || '').trim()
                 && ![...b.querySelectorAll('.sr-only')].some((x) => x.textContent.trim()))
  .map((b) => b.id || b.outerHTML.slice(0, 120))"""


def test_every_button_has_a_name_a_screen_reader_can_say(server, browser, shot):
    """Chainlit's icon buttons (sidebar, search, new chat, send, attach, copy, feedback) had a hover tooltip only;
    each is named after that tooltip, in the page's language (en-US here). So are the account menu and the
    phone's sidebar sheet, whose aria-labelledby pointed at nothing."""
    ctx, page = chat_login(browser, server.url, "carol")  # a tenant admin: the attach button is there too
    page.locator("#starters button", has_text=STARTER).click()
    page.get_by_text("Sources:", exact=False).first.wait_for(timeout=TIMEOUT)
    _idle(page)
    page.get_by_role("button", name="Helpful").first.wait_for(timeout=30_000)
    for name in ("Conversations", "Search", "New conversation", "Send message", "Attach files", "Copy to clipboard",
                 "Helpful", "Not helpful"):
        assert page.get_by_role("button", name=name, exact=True).count() >= 1, name
    assert page.evaluate(_UNNAMED_BUTTONS) == []
    shot(page, "chat-page-buttons-named")
    page.click("#user-nav-button")  # the account menu is named after whose it is
    page.get_by_role("menu", name="Carol Chen").wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    page.set_viewport_size(PHONE)  # on a phone the past chats open as a sheet, named like the sidebar
    page.click("#sidebar-trigger-button")
    page.get_by_role("dialog", name="Conversations").wait_for(timeout=30_000)
    assert page.evaluate(_UNNAMED_BUTTONS) == []
    ctx.close()


def test_signing_out_lands_on_the_login_page_signed_out(server, browser, shot):
    """The sign-out is one page load to the login page (public/atrium.js, part 7): the session is gone there."""
    ctx, page = chat_login(browser, server.url, "alice")
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.click("#user-nav-button")
    page.get_by_role("menuitem", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/chat/login$"), timeout=60_000)
    page.locator("#email").wait_for(timeout=60_000)
    assert page.request.get(f"{server.url}/api/me").status == 401
    ctx.close()


def test_a_session_ended_elsewhere_says_why_on_the_sign_in_page(server, browser, shot):
    """Signed out in another window (or by an administrator): the next page load lands on the sign-in page, which
    says why, once, instead of a bare form."""
    ctx, page = chat_login(browser, server.url, "erin")
    cookies = {c["name"]: c["value"] for c in ctx.cookies() if c["name"].startswith("access_token")}
    r = httpx.post(f"{server.url}/chat/logout", cookies=cookies, headers={"Origin": server.url})
    assert r.status_code == 200
    try:
        page.reload()
    except PlaywrightError:  # the chat noticed the ended session first and is already on its way to sign-in
        pass
    notice = page.locator("#atrium-session-notice")
    notice.wait_for(timeout=60_000)
    assert notice.inner_text() == "You were signed out (in another tab or window). Sign in again to continue."
    shot(page, "chat-page-10-session-ended")
    page.reload()  # said once
    page.locator("#email").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator("#atrium-session-notice").count() == 0
    ctx.close()
