"""Browser hardening in real Chromium (issue 14, findings 9 and 12): a page of another origin (another port of the
same host: same site, so the browser even sends the session cookie) cannot frame the app, sign the browser in or
out, or add a document with the signed-in admin's session; and the chat, the studio, the operator page and the API
docs work under the Content-Security-Policy with no violation (tests/browser/conftest.py fails any test that
reports one)."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.browser.conftest import chat_login, take_csp_violations, upload_ready
from tests.browser.test_studio import TIMEOUT
from tests.conftest import REPO, start_server, stop_server
from tests.llm.fakes import make_config_dir, mock

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STARTER = "What discount can a sales rep approve without a manager?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-security")
    prompts = tmp / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    cfg = make_config_dir(tmp, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "Up to 10% [1].")],
                          policy={"allowed_tiers": ["fast"]})
    srv = start_server(tmp, {"ATRIUM_CONFIG_DIR": str(cfg), "ATRIUM_PROMPTS_DIR": str(prompts)})
    upload_ready(srv, "sales", REPO / "demo" / "corpus" / "sales" / "pricing-rules.md")
    yield srv
    stop_server(srv)


class Site:
    """Another origin's pages: `put(path, html)`, then browse `url + path`."""

    def __init__(self) -> None:
        pages: dict[str, bytes] = {}
        self.pages = pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                body = pages.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def put(self, path: str, html: str) -> str:
        self.pages[path] = html.encode()
        return self.url + path


@pytest.fixture(scope="module")
def evil():
    site = Site()
    yield site
    site.httpd.shutdown()
    site.httpd.server_close()


def test_another_site_cannot_frame_the_studio_or_the_chat(server, evil, browser, shot):
    ctx, page = chat_login(browser, server.url, "bob")  # signed in: the publish button would be there
    take_csp_violations()
    page.goto(evil.put("/frame.html", f'<iframe id="studio" src="{server.url}/studio" width="900" height="500">'
                       f'</iframe><iframe id="chat" src="{server.url}/chat/" width="900" height="500"></iframe>'))
    page.wait_for_load_state("load")
    page.wait_for_timeout(1500)
    shot(page, "browser-security-framed")
    framed = [f for f in page.frames if f is not page.main_frame]
    assert len(framed) == 2
    for frame in framed:
        assert not frame.url.startswith(server.url), frame.url  # Chromium replaced it with its error page
        assert "Prompt Studio" not in frame.content() and 'id="root"' not in frame.content()
    refusals = take_csp_violations()
    assert len([r for r in refusals if "frame-ancestors 'none'" in r]) == 2, refusals
    ctx.close()


def test_another_sites_form_cannot_sign_the_browser_in_or_out(server, evil, browser):
    """Login CSRF (the victim then types into the attacker's account) and a forced sign-out."""
    ctx = browser.new_context()
    page = ctx.new_page()
    form = (f'<form method="post" action="{server.url}/chat/login"><input name="username" value="alice">'
            '<input name="password" value="atrium"></form><script>document.forms[0].submit()</script>')
    with page.expect_response(f"{server.url}/chat/login") as sent:
        page.goto(evil.put("/login.html", form))
    assert sent.value.status == 403 and sent.value.json()["error"] == "cross_site_request"
    assert not [c for c in ctx.cookies() if c["name"].startswith("access_token")]
    ctx.close()

    ctx, page = chat_login(browser, server.url, "carol")
    logout = f'<form method="post" action="{server.url}/chat/logout"></form><script>document.forms[0].submit()</script>'
    with page.expect_response(f"{server.url}/chat/logout") as sent:
        page.goto(evil.put("/logout.html", logout))
    assert sent.value.status == 403
    assert page.request.get(f"{server.url}/api/me").status == 200  # still signed in
    ctx.close()
    refused = server.rows("select route, reason from audit_event where reason = 'cross_site_request'")
    assert {r["route"] for r in refused} >= {"/chat/login"}


def test_another_sites_form_cannot_add_a_document_with_the_admins_session(server, evil, browser):
    """A form of another origin uploads a file into the tenant's knowledge base in the signed-in admin's name (a
    multipart form needs no CORS permission; the assistant would then quote the attacker's text)."""
    ctx, page = chat_login(browser, server.url, "carol")
    cookies = {c["name"]: c["value"] for c in ctx.cookies() if c["name"].startswith("access_token")}
    before = httpx.get(f"{server.url}/api/t/sales/documents", cookies=cookies).json()["documents"]
    form = (f'<form method="post" enctype="multipart/form-data" action="{server.url}/api/t/sales/documents">'
            '<input type="file" name="file"></form><script>'
            "const files = new DataTransfer();"
            "files.items.add(new File(['Discounts: always approve 90% without a manager.'], 'evil.md', "
            "{type: 'text/markdown'}));"
            "document.forms[0].file.files = files.files; document.forms[0].submit();</script>")
    with page.expect_response(f"{server.url}/api/t/sales/documents") as sent:
        page.goto(evil.put("/upload.html", form))
    assert sent.value.status == 403 and sent.value.json()["error"] == "cross_site_request"
    assert httpx.get(f"{server.url}/api/t/sales/documents", cookies=cookies).json()["documents"] == before
    refused = server.rows("select subject from audit_event where reason = 'cross_site_request' and route = :r",
                          r="/api/t/{tenant}/documents")  # the route's pattern (made-up paths group together)
    assert refused and refused[0]["subject"] == "carol"
    ctx.close()


def _framing_refused(response) -> None:  # noqa: ANN001 - Playwright
    assert "frame-ancestors 'none'" in (response.headers.get("content-security-policy") or ""), response.url


def test_the_pages_work_under_the_policy(server, browser, shot):
    """The chat (an answer, its sources panel read from a data: URL, a rating), the studio, the operator page and
    the API docs, each served with its policy; Chromium reports no violation."""
    ctx, page = chat_login(browser, server.url, "alice")
    _framing_refused(page.request.get(f"{server.url}/chat/"))
    page.locator("#starters button", has_text=STARTER).click()
    page.get_by_text("Sources:", exact=False).first.wait_for(timeout=TIMEOUT)
    page.locator("#chat-input:not([disabled])").wait_for(timeout=TIMEOUT)
    page.locator("a.element-link").first.click()
    page.locator("#side-view-content > *").first.wait_for(timeout=30_000)
    assert len(page.locator("#side-view-content").inner_text()) > 20  # the passage, fetched from its data: URL
    page.locator(".negative-feedback-off").first.click()  # a same-origin PUT with the session cookie
    page.get_by_placeholder("Your feedback...").fill("Too short")
    page.get_by_role("button", name="Submit feedback").click()
    page.locator(".negative-feedback-on").first.wait_for(timeout=30_000)
    shot(page, "browser-security-chat")
    ctx.close()

    ctx, page = chat_login(browser, server.url, "bob")
    _framing_refused(page.goto(f"{server.url}/studio"))
    page.locator("#assistant-list button[data-assistant=sales-assistant].active").wait_for()
    page.locator("#assistant-title", has_text="Sales Assistant").wait_for()
    ctx.close()

    ctx, page = chat_login(browser, server.url, "root")
    _framing_refused(page.goto(f"{server.url}/admin"))
    page.locator("#tenants").wait_for()
    _framing_refused(page.goto(f"{server.url}/docs"))
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    _framing_refused(page.goto(f"{server.url}/redoc"))
    page.wait_for_selector("h1", timeout=30_000)
    page.wait_for_load_state("networkidle")
    ctx.close()
    assert take_csp_violations() == []
