"""/docs renders in real Chromium from the app's own files: no request leaves 127.0.0.1 (it works offline)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

pytestmark = [pytest.mark.browser]


def test_swagger_ui_renders_offline_with_authorize(browser, live_server, shot):
    page = browser.new_page()
    hosts: set[str] = set()
    page.on("request", lambda req: hosts.add(urlparse(req.url).hostname or ""))
    page.goto(f"{live_server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Atrium" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("button.authorize", timeout=10_000)  # the security schemes reached the UI
    assert page.locator(".opblock-summary-path", has_text="/api/t/{tenant}/chat").count() >= 1
    shot(page, "docs-swagger")
    page.close()
    assert hosts == {"127.0.0.1"}, hosts
