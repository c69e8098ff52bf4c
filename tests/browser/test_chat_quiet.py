"""An ordinary chat session in real Chromium leaves the server log and the browser console quiet, and the chat
looks and reads like Atrium: sign in, three questions, a rating — no ERROR or WARNING line (no traceback) in the
server's log, no console error or warning in the page; the chat's colour is Atrium's, its words say "conversations", its
input is labelled, it has one h1 and fits a 390px screen (the served app, a mock model, SQLite)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.browser.conftest import serious_violations, upload_ready
from tests.browser.test_studio import TIMEOUT
from tests.conftest import REPO, start_server, stop_server
from tests.llm.fakes import make_config_dir, mock

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A heading in an answer is not the page's h1 (atrium.js part 9 announces it one level lower).
ANSWER = "# Discount approval\n\nA sales rep can approve up to 10% on their own; more needs a manager."
QUESTIONS = ("What discount can a sales rep approve without a manager?",
             "And what about more than that?",
             "Who approves a discount over 25%?")
PHONE = {"width": 390, "height": 844}
ATRIUM_PRIMARY = "rgb(79, 70, 229)"  # ui/static/page.css --accent (#4f46e5), the studio's primary colour


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chat-quiet")
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-haiku-5-5", ANSWER)],
                          policy={"allowed_tiers": ["fast"]})
    srv = start_server(tmp, {"ATRIUM_CONFIG_DIR": str(cfg)})
    upload_ready(srv, "sales", REPO / "demo" / "corpus" / "sales" / "pricing-rules.md")
    yield srv
    stop_server(srv)


def _loud_lines(text: str) -> list[str]:
    """The log's lines at WARNING or above, and anything else that is not a JSON log line of ours saying
    something went wrong (a traceback or a library's own print)."""
    loud = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and ("severity" in record or "level" in record):
            if record.get("severity", record.get("level")) in ("WARNING", "ERROR", "CRITICAL"):
                loud.append(line)
        elif re.search(r"traceback|error|warn|exception", line, re.I):
            loud.append(line)
    return loud


def _idle(page) -> None:
    page.wait_for_function("!document.querySelector('#chat-input[disabled]') && "
                           "!document.querySelector('#stop-button')", timeout=TIMEOUT)


ANSWER_STEP = '[data-step-type="assistant_message"]'


def _watch(page, problems: list[str]) -> None:
    """Console errors and warnings, uncaught exceptions and failed requests of `page`, into `problems`."""
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text} ({msg.location.get('url')})")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # (A request cut short by leaving the page, as signing out does, is no failure.)
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} {req.failure}")
            if "ERR_ABORTED" not in (req.failure or "") else None)


def _sign_in(page, url: str, user: str) -> None:
    page.goto(f"{url}/chat/login")
    page.fill("#email", user)
    page.fill("#password", "atrium")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/chat/?$"), timeout=60_000)
    page.locator("#chat-input").wait_for(timeout=60_000)


H1S = "document.querySelectorAll('h1:not([aria-level]), [role=heading][aria-level=\"1\"]').length"


def _accessible(page, width: int) -> None:
    """One h1, a labelled message box (when there is one), nothing wider than the screen."""
    page.wait_for_function(f"{H1S} === 1", timeout=30_000)
    if page.locator("#chat-input").count():
        label = page.locator("#chat-input").get_attribute("aria-label") or ""
        assert label.strip(), "the message box has no label"
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def _texts(tree: dict) -> list[str]:
    """The words of a translation file (its values, not its keys)."""
    return [t for v in tree.values() for t in (_texts(v) if isinstance(v, dict) else [str(v)])]


def test_the_chat_is_served_in_atriums_words_and_colour(server):
    theme = httpx.get(f"{server.url}/chat/public/theme.json").json()
    for mode in ("light", "dark"):
        variables = theme["variables"][mode]
        assert variables["--primary"] == variables["--ring"]
        assert not variables["--primary"].startswith("340 "), "Chainlit's pink"
    assert theme["variables"]["light"]["--primary"] == "243 75% 59%"  # #4f46e5, the studio's --accent
    assert theme["custom_fonts"] == []  # no font from a CDN
    page_css = (REPO / "ui" / "static" / "page.css").read_text()
    assert "--accent: #4f46e5" in page_css, "the studio's colour moved: move the chat's with it"

    words = httpx.get(f"{server.url}/chat/project/translations", params={"language": "en-US"}).json()["translation"]
    flat = "\n".join(_texts(words))
    assert not re.search(r"\bthreads?\b", flat, re.I), re.findall(r".*\bthreads?\b.*", flat, re.I)
    assert "me@example.com" not in flat and "Feedback updated" not in flat
    assert words["threadHistory"]["thread"]["actions"]["rename"]["title"] == "Rename conversation"
    assert words["threadHistory"]["sidebar"]["title"] == "Conversations"
    assert words["auth"]["login"]["form"]["email"]["placeholder"] == "Your user name"
    assert words["chat"]["messages"]["feedback"]["status"]["updated"] == "Thanks — your rating was saved"
    for language in ("de-DE", "fr-FR", "ja", "en-GB", "de-CH"):  # shipped, parent, or English
        other = httpx.get(f"{server.url}/chat/project/translations", params={"language": language}).json()
        assert "me@example.com" not in json.dumps(other), language

    page = httpx.get(f"{server.url}/chat/login").text
    shared = re.findall(r"<meta (?:property|name)=\"(?:og|twitter):[^>]*>", page)
    assert shared and all("chainlit" not in tag.lower() for tag in shared), shared
    assert '<meta property="og:title" content="Atrium">' in page
    assert f'<meta property="og:url" content="{server.url}/chat">' in page
    assert '<meta name="atrium-session" content="none">' in page  # asked without a session cookie
    signed_in = httpx.get(f"{server.url}/chat/", cookies=server.login("alice")).text
    assert "atrium-session" not in signed_in

    for path, mark in (("/chat/logo?theme=light", "#4f46e5"), ("/chat/logo?theme=dark", "#818cf8"),
                       ("/chat/favicon", "#4f46e5")):
        r = httpx.get(f"{server.url}{path}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml"), path
        assert mark in r.text and "Chainlit" not in r.text, path


def test_an_ordinary_session_leaves_the_log_and_the_console_quiet(server, browser, shot):
    problems: list[str] = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    _watch(page, problems)
    page.goto(f"{server.url}/chat/login")
    page.locator("#email").wait_for(timeout=60_000)
    _accessible(page, 1280)
    assert page.locator("#email").get_attribute("placeholder") == "Your user name"
    shot(page, "chat-quiet-01-sign-in")
    _sign_in(page, server.url, "carol")
    primary = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--primary').trim()")
    assert primary == "243 75% 59%", primary
    for i, question in enumerate(QUESTIONS, 1):
        page.locator("#chat-input").click()
        page.keyboard.type(question)
        page.keyboard.press("Enter")
        page.wait_for_function(f"document.querySelectorAll('{ANSWER_STEP}').length >= {i}", timeout=TIMEOUT)
        _idle(page)
    page.get_by_text("Sources:", exact=False).first.wait_for(timeout=TIMEOUT)
    page.locator(".positive-feedback-off").last.click()
    page.locator("#submit-feedback").click()
    page.locator(".positive-feedback-on").last.wait_for(timeout=30_000)
    page.get_by_text("Thanks — your rating was saved").first.wait_for(timeout=30_000)
    _accessible(page, 1280)
    shot(page, "chat-quiet-02-desktop")
    # The rest of an ordinary session: the studio and the console, from the chat's own links.
    page.goto(f"{server.url}/studio")
    page.locator("#assistant-list button").first.wait_for(timeout=60_000)
    _accessible(page, 1280)
    page.goto(f"{server.url}/console/sales/knowledge")
    page.get_by_text("pricing-rules.md").first.wait_for(timeout=60_000)
    _accessible(page, 1280)
    page.goto(f"{server.url}/chat/")
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(500)
    _accessible(page, PHONE["width"])
    shot(page, "chat-quiet-03-phone")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.evaluate("localStorage.setItem('vite-ui-theme', 'dark')")  # what the theme button stores
    page.reload()  # an ordinary page load, signed in, in the dark theme
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.locator('[id^="thread-"]').first.wait_for(timeout=60_000)
    page.locator("#starters button").first.wait_for(timeout=60_000)
    primary = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--primary').trim()")
    assert primary == "234 89% 74%", primary  # the studio's indigo, lighter on a dark page
    _accessible(page, 1280)
    page.wait_for_timeout(1000)  # the welcome screen fades in
    shot(page, "chat-quiet-05-dark")
    page.click("#user-nav-button")
    page.get_by_role("menuitem", name="Sign out").click()  # and back to the sign-in page
    page.wait_for_url(re.compile(r".*/chat/login$"), timeout=60_000)
    page.locator("#email").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    ctx.close()

    # Browsers in other languages: a shipped file, its parent language, or English; no warning for any.
    for locale in ("de-DE", "de-CH", "en-GB", "pt-BR"):
        ctx = browser.new_context(viewport=PHONE, locale=locale)
        page = ctx.new_page()
        _watch(page, problems)
        page.goto(f"{server.url}/chat/login")
        page.locator("#email").wait_for(timeout=60_000)
        _accessible(page, PHONE["width"])
        assert (page.locator("#email").get_attribute("placeholder") or "") in ("", "Your user name"), locale
        if locale == "de-DE":
            shot(page, "chat-quiet-04-sign-in-de-phone")
        ctx.close()

    log = server.log_path.read_text(errors="replace")  # from the start: the app's start is part of it
    assert _loud_lines(log) == [], "\n".join(_loud_lines(log))
    assert problems == [], "\n".join(problems)


def _a_conversation(page, url: str) -> None:
    """The signed-in chat with at least one conversation in its sidebar (one is asked for when there is none)."""
    page.goto(f"{url}/chat/")
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)  # the conversation list arrives after the page
    if not page.locator('[data-sidebar="menu-button"]').count():
        page.locator("#chat-input").click()
        page.keyboard.type(QUESTIONS[0])
        page.keyboard.press("Enter")
        page.wait_for_function(f"document.querySelectorAll('{ANSWER_STEP}').length >= 1", timeout=TIMEOUT)
        _idle(page)
        page.goto(f"{url}/chat/")
    page.locator('[data-sidebar="menu-button"]').first.wait_for(timeout=60_000)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_chat_studio_and_console_have_no_serious_accessibility_violation(server, browser, scheme):
    """axe-core (npm, installed by scripts/test-deps.sh) on the signed-in chat (with a conversation in its sidebar:
    its menu's trigger is checked too, atrium.js part 14), the studio and the console, at desktop and phone width
    (CSP bypassed only here, to inject axe)."""
    for viewport in ({"width": 1280, "height": 860}, PHONE):
        ctx = browser.new_context(viewport=viewport, bypass_csp=True, color_scheme=scheme)
        ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login("carol").items()])
        page = ctx.new_page()
        if viewport is not PHONE:  # (on a phone the sidebar is a sheet, closed)
            _a_conversation(page, server.url)
            violations = serious_violations(page)
            assert violations == [], ("/chat/ with a conversation", scheme, "\n".join(violations))
        for path, ready in (("/chat/", "#chat-input"), ("/studio", "#assistant-list button"),
                            ("/console/sales/knowledge", "h1")):
            page.goto(f"{server.url}{path}")
            page.locator(ready).first.wait_for(timeout=60_000)
            page.wait_for_timeout(500)  # the chat's welcome screen fades in
            violations = serious_violations(page)
            assert violations == [], (path, viewport["width"], scheme, "\n".join(violations))
        ctx.close()


def test_a_conversations_menu_opens_from_the_keyboard(server, browser):
    """Rename, share and delete of a conversation are reachable without a mouse: its button (after its link)
    opens the menu with Enter or Space, says it has one, and gets the focus back when the menu closes."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login("carol").items()])
    page = ctx.new_page()
    _a_conversation(page, server.url)
    row = page.locator('[data-sidebar="menu-button"]').first
    assert row.get_attribute("aria-haspopup") == "menu" and row.get_attribute("aria-expanded") == "false"
    assert page.locator('[data-sidebar="menu-button"] [aria-haspopup]').count() == 0
    here = page.url
    for key in ("Enter", " "):
        row.focus()
        page.keyboard.press(key)
        page.get_by_role("menuitem", name="Rename").wait_for(timeout=30_000)
        assert page.url == here, "the key opened the conversation instead of its menu"
        assert row.get_attribute("aria-expanded") == "true"
        assert page.evaluate("document.activeElement.getAttribute('role')") == "menuitem"
        page.keyboard.press("Escape")
        page.wait_for_function("!document.querySelector('[role=menu]')", timeout=30_000)
        page.wait_for_function("document.activeElement && document.activeElement.dataset.sidebar === 'menu-button'",
                               timeout=30_000)
    row.click()  # a click still opens the conversation
    page.wait_for_url(re.compile(r".*/chat/thread/.+"), timeout=60_000)
    ctx.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_chat_follows_the_systems_theme_until_the_user_picks_one(server, browser, scheme):
    """A first visit opens in the system's theme, as the studio, the console and /admin do (their page.css follows
    prefers-color-scheme); the theme button's choice (Chainlit's localStorage "vite-ui-theme") wins afterwards."""
    other = "light" if scheme == "dark" else "dark"
    primary = {"light": "243 75% 59%", "dark": "234 89% 74%"}  # public/theme.json: the studio's indigo
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme=scheme)
    page = ctx.new_page()
    problems: list[str] = []
    _watch(page, problems)
    for path, ready in (("/chat/login", "#email"), ("/chat/", "#chat-input")):
        if path == "/chat/":  # signed in (a session on the sign-in page would be sent on to the chat)
            ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login("carol").items()])
        page.goto(f"{server.url}{path}")
        page.locator(ready).wait_for(timeout=60_000)
        page.wait_for_function(f"document.documentElement.classList.contains('{scheme}')", timeout=30_000)
        assert not page.evaluate(f"document.documentElement.classList.contains('{other}')"), path
        variable = "getComputedStyle(document.documentElement).getPropertyValue('--primary').trim()"
        assert page.evaluate(variable) == primary[scheme], path
    page.evaluate(f"localStorage.setItem('vite-ui-theme', '{other}')")  # what the theme button stores
    page.reload()
    page.locator("#chat-input").wait_for(timeout=60_000)
    page.wait_for_function(f"document.documentElement.classList.contains('{other}')", timeout=30_000)
    page.wait_for_timeout(500)
    ctx.close()
    assert problems == [], "\n".join(problems)


def test_the_chats_header_is_the_shared_header(server, browser):
    """The chat's header lists what every page's header lists for that user (backend/api/pages.py nav_links, by
    /api/me's `pages`), the chat marked as the current page, and no Chainlit "Readme" button."""
    expected = {"carol": ["Chat", "Studio", "Console"], "bob": ["Chat", "Studio"], "alice": ["Chat"]}
    for user, labels in expected.items():
        ctx = browser.new_context(viewport={"width": 1280, "height": 860})
        ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in server.login(user).items()])
        page = ctx.new_page()
        page.goto(f"{server.url}/chat/")
        page.locator("#chat-input").wait_for(timeout=60_000)
        # Chainlit may redraw its header after the links first appear (atrium.js draws them again): wait until
        # they are there in full, then read them.
        page.wait_for_function(f"document.querySelectorAll('#atrium-nav a').length === {len(labels)}",
                               timeout=30_000)
        links = page.evaluate("[...document.querySelectorAll('#atrium-nav a')].map(a => [a.textContent, "
                              "a.getAttribute('href'), a.getAttribute('aria-current')])")
        assert [label for label, _, _ in links] == labels, user
        assert [href for _, href, current in links if current == "page"] == ["/chat"], user
        if "Studio" in labels:  # the same list in the studio's header
            shared = httpx.get(f"{server.url}/studio", cookies=server.login(user)).text
            nav = shared.split('<nav class="topnav"', 1)[1].split("</nav>", 1)[0]
            assert re.findall(r'<a href="([^"]+)"', nav) == [href for _, href, _ in links], user
        assert page.locator("#readme-button").count() == 0, user
        if user == "carol":
            page.set_viewport_size(PHONE)  # on a phone the links are in the account menu
            page.click("#user-nav-button")
            page.get_by_role("menuitem", name="Open the console").wait_for(timeout=30_000)
            assert page.get_by_role("menuitem", name="Open the studio").count() == 1
        ctx.close()
    settings = httpx.get(f"{server.url}/chat/project/settings", params={"language": "en-US"},
                         cookies=server.login("alice")).json()
    assert not settings.get("markdown"), "chainlit.md has text again: Chainlit shows its Readme button for it"
