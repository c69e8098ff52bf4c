"""The operations page in real Chromium: an operator signs in on /admin and stays there (not sent into the chat
with "come back to /admin"), and their own visits before signing in are folded away from the real denials."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.browser]


def test_the_operator_signs_in_on_the_page_and_stays_there(browser, live_server, shot):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin")
    assert page.locator("#login h1").inner_text() == "Sign in to Atrium Operations"
    assert "come back" not in page.locator("#login").inner_text()
    page.fill("#login-username", "root")
    page.fill("#login-password", "wrong")
    page.click("#login-submit")
    page.locator("#login-error", has_text="Wrong username or password").wait_for()
    page.fill("#login-password", "atrium")
    page.click("#login-submit")
    page.locator("#tenants").wait_for()
    assert re.fullmatch(rf"{re.escape(live_server.url)}/admin/?", page.url), page.url

    # The visits above (before signing in) are audited but folded away, below the real denials.
    assert "up to 50" in page.locator("#denials h2").inner_text()
    prompts = page.locator("#sign-in-prompts")
    assert prompts.get_attribute("open") is None
    assert re.search(r"Sign-in prompts \(\d+\+?\)", prompts.locator("summary").inner_text())
    assert page.locator("#sign-in-prompt-events tbody tr").first.is_hidden()
    prompts.locator("summary").click()
    assert page.locator("#sign-in-prompt-events tbody tr").first.is_visible()
    assert "not_authenticated" in page.locator("#sign-in-prompt-events").inner_text()
    shot(page, "admin-signed-in-on-the-page")

    page.click("#sign-out")
    page.locator("#login-form").wait_for()
    page.close()
