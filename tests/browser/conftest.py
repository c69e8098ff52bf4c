"""Real Chromium (Debian's package) driven by Playwright; skipped with a visible reason when missing."""

from __future__ import annotations

import re
import shutil
import time
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
        _report_csp_violations(chromium)
        yield chromium
        chromium.close()


# The app's Content-Security-Policy (backend/api/browser_security.py) holds in these tests as in any browser: what
# it blocks, Chromium reports in the console, and that fails the test (a page the policy breaks, or a policy that
# lets something through that the page should not do).
_csp_violations: list[str] = []


def _report_csp_violations(chromium) -> None:  # noqa: ANN001 - Playwright
    def watch(target):  # noqa: ANN001, ANN202
        target.on("console", lambda msg: _csp_violations.append(f"{msg.location.get('url')}: {msg.text}")
                  if "Content Security Policy" in msg.text else None)
        return target

    new_context, new_page = chromium.new_context, chromium.new_page
    chromium.new_context = lambda *a, **kw: watch(new_context(*a, **kw))
    chromium.new_page = lambda *a, **kw: watch(new_page(*a, **kw))


@pytest.fixture(autouse=True)
def no_csp_violations(request):
    _csp_violations.clear()
    yield
    if "browser" in request.fixturenames:
        assert not _csp_violations, "the page broke the Content-Security-Policy:\n" + "\n".join(_csp_violations)


def take_csp_violations() -> list[str]:
    """The violations reported so far in this test, for a test that provokes some on purpose (they are cleared)."""
    taken = list(_csp_violations)
    _csp_violations.clear()
    return taken


def _wait_for_function(self, expression: str, *, arg=None, polling=None, timeout=None):  # noqa: ANN001, ANN202
    """Playwright's own wait_for_function runs its predicate through eval() in the page, which the app's CSP
    (no 'unsafe-eval') refuses; `evaluate` goes through the DevTools protocol, which no page policy governs."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + (30_000 if timeout is None else timeout) / 1000
    while True:
        try:
            result = self.evaluate(expression, arg)
        except Exception as exc:  # the page navigated while the predicate ran: ask the next one
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise PlaywrightTimeout(f"wait_for_function: {expression!r} still false after {timeout} ms")
        self.wait_for_timeout(polling if isinstance(polling, int | float) else 100)


def _use_protocol_evaluation() -> None:
    from playwright.sync_api import Page

    Page.wait_for_function = _wait_for_function  # type: ignore[method-assign]


_use_protocol_evaluation()


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


AXE = Path(__file__).resolve().parent.parent / "oidc" / "node_modules" / "axe-core" / "axe.min.js"
_AXE_SERIOUS = """async ([exclude, rules]) => {
  const r = await axe.run(exclude.length ? {exclude: exclude.map((s) => [s])} : document,
                          rules.length ? {runOnly: rules} : {resultTypes: ["violations"]});
  return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")}`);
}"""


def serious_violations(page, *, exclude: tuple[str, ...] = (), rules: tuple[str, ...] = ()) -> list[str]:  # noqa: ANN001
    """axe-core's serious and critical violations on `page` (whose context must bypass the CSP to inject axe);
    `exclude`: CSS selectors left out, `rules`: only these rules."""
    assert AXE.is_file(), "axe-core is missing: run `bash scripts/test-deps.sh` (npm ci in tests/oidc)"
    page.add_script_tag(path=str(AXE))
    return page.evaluate(_AXE_SERIOUS, [list(exclude), list(rules)])


def upload_ready(server, tenant: str, path: Path, user: str = "carol") -> list[dict]:  # noqa: ANN001
    """Upload `path` to `tenant` as `user` and wait (bounded) until every document of the tenant is ready."""
    import httpx

    r = httpx.post(f"{server.url}/api/t/{tenant}/documents", cookies=server.login(user), timeout=60,
                   files={"file": (path.name, path.read_bytes(), "text/markdown")})
    assert r.status_code == 202, r.text
    for _ in range(480):
        docs = httpx.get(f"{server.url}/api/t/{tenant}/documents", cookies=server.login(user)).json()["documents"]
        if docs and all(d["status"] == "ready" for d in docs):
            return docs
        time.sleep(0.5)
    raise AssertionError(docs)
