"""The operations page in real Chromium: an operator signs in on /admin and stays there (not sent into the chat
with "come back to /admin"), and their own visits before signing in are folded away from the real denials."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.conftest import serious_violations

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


DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# What sticks out past the window's right edge (nothing, when the page does not scroll sideways).
_OVERFLOW = """() => document.documentElement.scrollWidth <= window.innerWidth ? [] :
  Array.from(document.querySelectorAll("body *")).filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 6).map((e) => `${e.tagName}.${e.className}: ${(e.textContent || "").trim().slice(0, 60)}`)"""


@pytest.fixture(scope="module")
def seeded(live_server) -> None:  # noqa: ANN001
    """Two tenants' turns and refusals on the 9 days before today in the served app's database (something to
    draw; not today, so no other test's quota moves)."""
    import sqlalchemy as sa
    from sqlmodel import Session

    from backend.db.models import AuditEvent, ChatTurn

    engine = sa.create_engine(f"sqlite:///{live_server.data_dir / 'atrium.db'}")
    now = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    with Session(engine) as s:
        for i in range(1, 10):
            for tenant, model in (("sales", "anthropic/claude-haiku-5-5"), ("engineering", "local/smollm2")):
                s.add(ChatTurn(tenant=tenant, subject="seed", model=model, created_at=now - timedelta(days=i),
                               prompt_tokens=100 * (i + 1), completion_tokens=20 * i, cost_usd=0.01 * i,
                               latency_ms=200 + 30 * i, outcome="error" if i == 3 else "ok"))
        s.add(AuditEvent(kind="denied", tenant="sales", subject="seed", route="/api/t/sales/chat", status=429,
                         reason="tokens_per_day", count=4, created_at=now - timedelta(days=2)))
        s.commit()
    engine.dispose()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_charts_fit_a_phone_and_have_no_serious_accessibility_violation(browser, live_server, seeded, shot,
                                                                            viewport):
    # axe is injected as a script of its own: only this context lets it past the page's CSP.
    ctx = browser.new_context(viewport=viewport, bypass_csp=True)
    ctx.add_cookies([{"name": k, "value": v, "url": live_server.url} for k, v in live_server.login("root").items()])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/admin")
    page.locator("#charts").wait_for()
    page.click("#quick-ranges a:has-text('Last 7 days')")  # the range control
    page.wait_for_load_state("networkidle")
    assert page.locator("#chart-requests-sales .chart-bar").count() == 7
    drawn = page.locator("#chart-requests-sales .chart-bar").evaluate_all("(bars) => bars.map((b) => +b.dataset.value)")
    assert sum(drawn[:-1]) == 5  # the 6 seeded days before today, less the failed turn's (today: other tests')
    assert page.locator("#quick-ranges a[aria-current]").inner_text() == "Last 7 days"
    # Per model, per day: one seeded turn a day for each model, but for the failed one 3 days ago (not counted).
    per_model = page.locator("#chart-model-requests-local_smollm2 .chart-bar")
    assert per_model.count() == 7
    assert per_model.evaluate_all("(bars) => bars.map((b) => +b.dataset.value)")[:-1] == [1, 1, 1, 0, 1, 1]
    assert errors == []  # an ordinary page load logs no error in the browser
    assert page.locator("h1").count() == 1
    assert page.evaluate(_OVERFLOW) == [], "/admin scrolls sideways"
    width = "phone" if viewport["width"] < 500 else "desktop"
    shot(page, f"admin-charts-{width}")
    assert serious_violations(page) == []
    ctx.close()
