"""The Tests tab in real Chromium with hostile text everywhere an editor or a model can put it: a case's question,
facts, documents, forbidden phrases and note, and the model's answers (scripted through LiteLLM's mock_response),
read in the case list, a run's results and the comparison of two runs. Nothing runs (no script, no handler, no
dialog), no element comes from the text, and links lead only to http(s) or this site — not to `//evil` spelt
`/\\evil`, which browsers read the same."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.served import studio_server
from tests.llm.fakes import make_config_dir, mock

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 120_000
XSS = ("<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
       "<svg onload=\"document.title='pwned'\"></svg>")
ANSWER = (f"**Up to 10%** {XSS} [a](/\\evil.example/a) [b](JaVaScRiPt:document.title='pwned') "
          "[c](//evil.example/c) [d](data:text/html,hi) [e](/studio#ok) [f](https://example.com/f)")
WRONG = f"Up to 20% {XSS} [z](/\\evil.example/z)"  # the `fast` tier: fails the case `local` passes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio-tests-hostile")
    cfg = make_config_dir(tmp, model_list=[mock("local", "openai/gpt-4o-mini", ANSWER),
                                           mock("fast", "openai/gpt-4o-mini", WRONG)],
                          answers={t: {"mode": "generative", "grounding_check": False} for t in ("local", "fast")})
    with studio_server(tmp, cfg) as srv:
        yield srv


def _no_harm(page) -> None:
    assert page.title() != "pwned"
    assert page.evaluate("() => window.__pwned === undefined")
    for sel in ("#tab-tests img", "#tab-tests script", "#tab-tests svg[onload]", "#tab-tests [onerror]"):
        assert page.locator(sel).count() == 0, sel
    hrefs = page.eval_on_selector_all("#tab-tests a[href]", "as => as.map(a => a.href)")
    origin = page.evaluate("() => location.origin")
    for href in hrefs:
        assert href.startswith((origin + "/", "https://example.com/", "blob:")), href
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_hostile_text_in_cases_and_answers_shows_as_text(server, browser, shot):
    api = f"{server.url}/api/t/sales/evals/sales-assistant"
    bob = server.login("bob")
    question = f"Who approves it? {XSS}"  # retrieval finds nothing for it: answered "I don't know"
    for case in ({"question": "What discount can an Account Executive approve on their own?", "must_not": ["20%"],
                  "note": f"[n](/\\evil.example/n) {XSS}"},
                 {"question": "Who must approve a discount of 15 percent?", "facts": [f"10% {XSS}"],
                  "cite": [f"pricing {XSS}"], "must_not": [XSS]},
                 {"question": question, "must_refuse": True}):
        r = httpx.post(f"{api}/cases", cookies=bob, json=case)
        assert r.status_code == 201, r.text
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in bob.items()])
    page = ctx.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))  # type: ignore[attr-defined]
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server.url}/studio#sales-assistant/tests")
    page.locator("#tab-tests:not([hidden])").wait_for()
    page.get_by_text(question).first.wait_for(timeout=TIMEOUT)
    _no_harm(page)

    for tier in ("local", "fast"):  # production on two tiers: the first case passes on one, fails on the other
        page.select_option("#run-what", "1")
        page.select_option("#run-tier", tier)
        before = len(page.locator("#runs-table tbody tr[data-run]").all())
        page.click("#btn-run")
        page.wait_for_function(f"document.querySelectorAll('#runs-table tbody tr[data-run]').length > {before}",
                               timeout=TIMEOUT)
        page.wait_for_function("document.getElementById('run-progress-text').textContent.startsWith('Finished')",
                               timeout=TIMEOUT)
        page.locator("#run-view .result-case").first.wait_for()
    page.eval_on_selector_all("#run-view details", "ds => ds.forEach(d => { d.open = true; })")  # folded passes
    page.locator("#run-view").get_by_text("Up to 20%", exact=False).first.wait_for()
    assert "<img src=x" in page.locator("#run-view").inner_text()  # shown as the text it is
    _no_harm(page)
    shot(page, "studio-tests-hostile-run")

    runs = httpx.get(f"{api}/runs", cookies=bob).json()["runs"]
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs), runs
    by_tier = {r["tier"]: r["id"] for r in runs}
    page.select_option("#cmp-a", by_tier["local"])
    page.select_option("#cmp-b", by_tier["fast"])
    page.click("#btn-compare-runs")
    page.locator(".compare-table").wait_for()
    _no_harm(page)
    shot(page, "studio-tests-hostile-compare")
    assert dialogs == []
    ctx.close()
