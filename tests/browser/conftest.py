"""Real Chromium (Debian's package) driven by Playwright; skipped with a visible reason when missing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("real-browser test skipped: /usr/bin/chromium is missing "
                    "(install it with `bash scripts/test-deps.sh`, which runs apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def shot():
    """shot(page, "name") saves tests/artifacts/<name>.png for reviewers (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)

    def save(page, name: str, *, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return save


def chat_login(browser, url: str, user: str, viewport: dict | None = None):  # noqa: ANN001, ANN201 - Playwright
    """A new browser context signed in through the chat's login page: (context, page) on /chat."""
    ctx = browser.new_context(viewport=viewport or {"width": 1280, "height": 860})
    page = ctx.new_page()
    page.goto(f"{url}/chat/login")
    page.fill("#email", user)
    page.fill("#password", "atrium")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/chat/?$"), timeout=60_000)
    return ctx, page
