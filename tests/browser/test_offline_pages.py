"""The app's pages render in real Chromium from the app's own files: no request leaves 127.0.0.1 (they work
offline, and no third party learns who opens them)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

pytestmark = [pytest.mark.browser]


def _hosts(page) -> set[str]:
    """The hosts the page sends requests to (blob: and data: URLs never leave the browser)."""
    hosts: set[str] = set()
    page.on("request", lambda req: None if req.url.startswith(("blob:", "data:"))
            else hosts.add(urlparse(req.url).hostname or ""))
    return hosts


def test_swagger_ui_renders_offline_with_authorize(browser, live_server, shot):
    page = browser.new_page()
    hosts = _hosts(page)
    page.goto(f"{live_server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Atrium" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("button.authorize", timeout=10_000)  # the security schemes reached the UI
    assert page.locator(".opblock-summary-path", has_text="/api/t/{tenant}/chat").count() >= 1
    shot(page, "docs-swagger")
    page.close()
    assert hosts == {"127.0.0.1"}, hosts


def test_the_chat_login_page_loads_nothing_from_other_hosts(browser, live_server, shot):
    page = browser.new_page()
    hosts = _hosts(page)
    page.goto(f"{live_server.url}/chat/login")
    page.wait_for_selector("input#email, input[name='email'], input[type='password']", timeout=60_000)
    page.wait_for_load_state("networkidle")
    shot(page, "chat-login-offline")
    html = page.content()
    page.close()
    assert hosts == {"127.0.0.1"}, hosts  # Chainlit's page links Google Fonts and KaTeX's CSS from a CDN
    assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html


def test_redoc_renders_offline(browser, live_server, shot):
    """ReDoc's sidebar footer loaded Redocly's logo from cdn.redoc.ly: the app serves the bundle with a local
    image instead."""
    page = browser.new_page()
    hosts = _hosts(page)
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.goto(f"{live_server.url}/redoc")
    page.wait_for_selector("h1", timeout=30_000)
    assert "Atrium" in page.inner_text("h1")
    page.wait_for_selector("img[alt='redocly logo']", state="attached", timeout=10_000)
    page.wait_for_load_state("networkidle")
    shot(page, "docs-redoc")
    page.close()
    assert hosts == {"127.0.0.1"}, hosts
    assert failed == [], failed
