"""Runs through the real pipeline (retrieval over an ingested document, the prompt, a model speaking OpenAI's wire
protocol whose answers are scripted per question): each check gives the expected verdict (a correct answer passes,
a wrong fact fails, a missing citation fails, a refusal where one is due passes, a forbidden phrase fails); the
run's progress and totals; usage rows of channel `eval` on the member who ran it; a draft compared with a version
names the case it broke with both answers; a quota refusal stops the run half-way, and resuming it answers only the
rest — also after the process that ran it died."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml
from sqlmodel import select

from backend.db.models import ChatTurn, EvalResult, EvalRun
from backend.knowledge.cli import ingest_paths
from backend.settings import REPO_ROOT
from tests.evals.conftest import wait_for_run
from tests.llm.fakes import FakeOpenAI, make_config_dir, set_tenant

T, A = "sales", "sales-assistant"
BASE = f"/api/t/{T}/evals/{A}"
OPEN = {"requests_per_minute": None, "user_requests_per_minute": None, "tokens_per_day": None,
        "monthly_budget_usd": None}
BROKEN = "ALWAYS-SAY-TWENTY"  # in a draft's body: the scripted model then gets the rep's limit wrong

# question -> (the scripted answer, what the case expects)
SCRIPT = {
    "What discount can an Account Executive approve on their own?": (
        "An Account Executive may approve a discount of up to 10% on their own [1].",
        {"facts": ["up to 10%"], "cite": ["pricing-rules.md"], "must_not": ["20%"]}),
    "Who must approve a discount of 15 percent?": (
        "A 15% discount needs the approval of the VP of Sales [1].",  # wrong: the Sales Manager
        {"facts": ["Sales Manager"], "cite": ["pricing-rules.md"]}),
    "What is the list price of the Growth plan?": (
        "The Growth plan costs $89 per user per month [1].",
        {"facts": ["$89 per user per month"], "cite": ["sales-playbook.md"]}),  # that document is not cited
    "How many weeks of parental leave do employees get?": (
        "Employees get 16 weeks of parental leave.",  # never asked: retrieval finds nothing, the pipeline refuses
        {"must_refuse": True}),
    "What is the minimum annual contract value for Enterprise?": (
        "Enterprise has a minimum annual contract value of $50,000 [1].",  # wrong, and forbidden
        {"must_not": ["$50,000"]}),
}
EXPECTED = {  # question -> (passed, the checks that fail); a wrong fact is also one the passages do not support
    "What discount can an Account Executive approve on their own?": (True, []),
    "Who must approve a discount of 15 percent?": (False, ["facts", "grounded"]),
    "What is the list price of the Growth plan?": (False, ["cited"]),
    "How many weeks of parental leave do employees get?": (True, []),
    "What is the minimum annual contract value for Enterprise?": (False, ["must_not", "grounded"]),
}


def scripted(body: dict) -> tuple[str, str]:
    question = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    system = " ".join(str(m["content"]) for m in body["messages"] if m["role"] == "system")
    for q, (answer, _) in SCRIPT.items():
        if q in question:
            if BROKEN in system and "on their own" in q:
                return "An Account Executive may approve up to 20% on their own [1].", "stop"
            return answer, "stop"
    return "I don't know.", "stop"


def case_file() -> str:
    return yaml.safe_dump({"cases": [{"id": f"c{i}", "question": q, **expects}
                                     for i, (q, (_, expects)) in enumerate(SCRIPT.items())]})


@pytest.fixture
def model():
    with FakeOpenAI(reply=scripted) as server:
        yield server


def fast_config(root: Path, model: FakeOpenAI, *, allowed: tuple[str, ...] = ("fast",)) -> Path:
    """A config dir whose only model is `fast` on `model` (a FakeOpenAI), answering generatively without the
    grounding check (the checks grade what it says), with no quota in the way; `allowed`: the tenants' tiers."""
    return make_config_dir(root, model_list=[
        {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-test",
                                                  "api_base": model.url}}],
        fallbacks=[], policy={"allowed_tiers": list(allowed), "default_tier": "fast"}, quotas=OPEN,
        answers={"fast": {"mode": "generative", "grounding_check": False}})


def make_app(make_api_client, tmp_path, model, no_demo_sets, *, quotas: dict | None = None, name: str = "cfg"):
    cfg = fast_config(tmp_path / name, model)
    if quotas:
        set_tenant(cfg, T, quotas=quotas)
    return make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_EVALS_DIR=no_demo_sets, ATRIUM_RESPONSE_CACHE="false")


@pytest.fixture
def app(make_api_client, tmp_path, model, no_demo_sets, cookies_for):
    client = make_app(make_api_client, tmp_path, model, no_demo_sets)
    _prepare(client, cookies_for)
    return client


def _prepare(client, cookies_for) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert ingest_paths(client.app.state.services, tenant=T,
                            paths=[str(REPO_ROOT / "demo" / "corpus" / "sales" / "pricing-rules.md")]) == 0
    r = client.post(f"{BASE}/cases/import", cookies=cookies_for("bob"), json={"yaml": case_file()})
    assert r.json() == {"added": 5, "updated": 0, "unchanged": 0}, r.text


def _usage(client) -> list[ChatTurn]:
    with client.app.state.services.db.session() as s:
        return list(s.exec(select(ChatTurn).where(ChatTurn.channel == "eval").order_by(ChatTurn.id)))


def test_each_check_gives_its_verdict_and_the_run_is_paid_for_by_the_editor_who_ran_it(app, model, cookies_for):
    bob = cookies_for("bob")
    r = app.post(f"{BASE}/runs", cookies=bob, json={"version": 1})
    assert r.status_code == 202 and r.json()["status"] == "queued" and r.json()["total"] == 5, r.text
    run = wait_for_run(app, T, A, r.json()["id"], bob)
    assert (run["status"], run["done"], run["total"], run["passed"], run["failed"]) == ("finished", 5, 5, 2, 3), run
    assert run["score"] == 0.4 and run["progress"] == 1.0 and run["prompt_version"] == 1
    assert run["model"] == "openai/gpt-4o-mini" and run["started_by"] == "bob" and run["kb_version"].startswith("1:")
    assert run["tokens"] == 4 * 18 and run["latency_ms"] is not None and run["judge"] is None
    got = {x["question"]: x for x in run["results"]}
    for question, (passed, failing) in EXPECTED.items():
        result = got[question]
        assert result["passed"] is passed, (question, result["checks"])
        failed = [name for name, check in result["checks"].items() if check["ok"] is False]
        assert failed == failing, (question, result["checks"])
    checks = got["Who must approve a discount of 15 percent?"]["checks"]
    assert "missing: Sales Manager" in checks["facts"]["detail"] and checks["cited"]["ok"] is True
    assert "VP of Sales" in checks["grounded"]["detail"]  # the unsupported sentence is named
    assert "$50,000" in got["What is the minimum annual contract value for Enterprise?"]["checks"]["grounded"]["detail"]
    assert "did not cite sales-playbook.md" in got["What is the list price of the Growth plan?"]["checks"]["cited"][
        "detail"]
    refusal = got["How many weeks of parental leave do employees get?"]
    assert refusal["answer"].startswith("I don't know") and refusal["checks"]["refused"]["ok"] is True
    assert refusal["checks"]["grounded"]["ok"] is None and refusal["tokens"] == 0
    correct = got["What discount can an Account Executive approve on their own?"]
    assert correct["citations"] and correct["citations"][0]["filename"] == "pricing-rules.md"
    assert correct["checks"]["grounded"]["ok"] is True
    # Four model calls (the refusal made none), each a usage row of channel eval, on bob, with the prompt version.
    rows = _usage(app)
    assert len(rows) == 5 and len(model.requests) == 4
    assert {(r.subject, r.prompt_version, r.assistant) for r in rows} == {("bob", 1, A)}
    assert sorted(r.id for r in rows) == sorted(x["turn_id"] for x in run["results"])
    listed = app.get(f"{BASE}/runs", cookies=bob).json()["runs"]
    assert [x["id"] for x in listed] == [run["id"]] and listed[0]["resumable"] is False


def test_a_draft_compared_with_the_version_names_the_case_it_broke_with_both_answers(app, cookies_for):
    bob = cookies_for("bob")
    version = wait_for_run(app, T, A, app.post(f"{BASE}/runs", cookies=bob, json={"version": 1}).json()["id"], bob)
    body = app.get(f"/api/t/{T}/prompts/{A}/versions/1", cookies=bob).json()
    config = {**body["config"], "tier": "fast"}  # version 1 asks for `local`, not allowed in this test's tenant
    r = app.post(f"{BASE}/runs", cookies=bob, json={"body": body["body"] + f"\n\n{BROKEN}", "config": config})
    assert r.status_code == 202, r.text
    draft = wait_for_run(app, T, A, r.json()["id"], bob)
    assert draft["prompt_version"] is None and BROKEN in draft["draft"]["body"] and draft["passed"] == 1
    r = app.get(f"{BASE}/compare", cookies=bob, params={"a": version["id"], "b": draft["id"]})
    assert r.status_code == 200, r.text
    diff = r.json()
    assert diff["regressed"] == ["c0"] and diff["fixed"] == [] and diff["score"] == {"a": 0.4, "b": 0.2,
                                                                                       "delta": -0.2}
    changed = diff["changed"][0]
    assert "up to 10%" in changed["a"]["answer"] and "up to 20%" in changed["b"]["answer"]
    assert changed["b"]["checks"]["must_not"]["ok"] is False and changed["b"]["checks"]["facts"]["ok"] is False
    assert diff["same_kb"] is True and diff["cost_usd"]["a"] == version["cost_usd"]
    # A run of another assistant (or an id that is none) is not found, not compared.
    assert app.get(f"/api/t/{T}/evals/deal-desk/compare", cookies=bob,
                   params={"a": version["id"], "b": draft["id"]}).status_code == 404


def test_an_invalid_draft_or_an_empty_set_is_refused_before_anything_runs(app, cookies_for):
    bob = cookies_for("bob")
    r = app.post(f"{BASE}/runs", cookies=bob, json={"body": "Hello {unknown_variable}", "config": {}})
    assert r.status_code == 422, r.text
    assert app.post(f"{BASE}/runs", cookies=bob, json={"version": 99}).status_code == 404
    assert app.post(f"{BASE}/runs", cookies=bob, json={}).status_code == 422
    r = app.post(f"/api/t/{T}/evals/deal-desk/runs", cookies=bob, json={"version": 1})
    assert r.status_code == 422 and r.json()["error"] == "no_cases"
    with app.app.state.services.db.session() as s:
        assert list(s.exec(select(EvalRun))) == []


def test_a_quota_refusal_stops_the_run_and_resuming_answers_only_the_rest(make_api_client, tmp_path, model,
                                                                          no_demo_sets, cookies_for):
    # Two requests a minute per user: bob's third case is refused (a 429 inside the run).
    client = make_app(make_api_client, tmp_path, model, no_demo_sets, quotas={"user_requests_per_minute": 2})
    _prepare(client, cookies_for)
    bob, carol = cookies_for("bob"), cookies_for("carol")
    run = wait_for_run(client, T, A, client.post(f"{BASE}/runs", cookies=bob, json={"version": 1}).json()["id"], bob)
    assert run["status"] == "failed", run
    assert run["error"].startswith("quota_exceeded: You have reached your limit of 2 requests per minute"), run
    stopped_at = run["done"]
    assert 2 <= stopped_at < 5 and run["resumable"] is True
    # Resumed by carol (a tenant admin): her own per-user window; the calls from here on are hers.
    r = client.post(f"{BASE}/runs/{run['id']}/resume", cookies=carol)
    assert r.status_code == 202, r.text
    run = wait_for_run(client, T, A, run["id"], carol)
    assert (run["status"], run["done"], run["passed"]) == ("finished", 5, 2), run
    rows = _usage(client)
    answered = [r for r in rows if r.outcome == "ok"]
    assert len(answered) == 5 and len(model.requests) == 4  # no case answered twice
    assert {r.subject for r in rows if r.outcome == "quota"} == {"bob"}
    assert {r.subject for r in answered} == {"bob", "carol"}
    assert client.post(f"{BASE}/runs/{run['id']}/resume", cookies=bob).status_code == 409  # finished


def test_a_run_whose_process_died_is_resumed_by_another(make_api_client, tmp_path, model, no_demo_sets,
                                                       cookies_for):
    first = make_app(make_api_client, tmp_path, model, no_demo_sets)
    _prepare(first, cookies_for)
    bob = cookies_for("bob")
    run = wait_for_run(first, T, A, first.post(f"{BASE}/runs", cookies=bob, json={"version": 1}).json()["id"], bob)
    # As a process killed after two cases leaves it: running, owned by a process with no heartbeat, three results
    # missing (the rows of the answers it never got to).
    svc = first.app.state.services
    with svc.db.session() as s:
        for result in s.exec(select(EvalResult).where(EvalResult.run_id == run["id"])).all()[2:]:
            s.delete(result)
        row = s.get(EvalRun, run["id"])
        row.status, row.owner, row.done, row.finished_at = "running", "gone-host:1:deadbeef", 2, None
        s.add(row)
        s.commit()
    calls = len(model.requests)
    # The same data dir, a new process (services built again): the run shows as resumable, and resumes.
    second = make_app(make_api_client, tmp_path, model, no_demo_sets, name="restarted")
    listed = second.get(f"{BASE}/runs", cookies=bob).json()["runs"][0]
    assert (listed["status"], listed["resumable"]) == ("running", True)
    assert second.post(f"{BASE}/runs/{run['id']}/resume", cookies=bob).status_code == 202
    done = wait_for_run(second, T, A, run["id"], bob)
    assert (done["status"], done["done"], done["passed"]) == ("finished", 5, 2)
    assert [x["case_id"] for x in done["results"]] == ["c0", "c1", "c2", "c3", "c4"]
    assert len(model.requests) - calls in (2, 3)  # the three missing cases; the refusal calls no model


def test_a_run_on_a_tier_that_is_not_live_is_refused_naming_the_live_ones(make_api_client, tmp_path, model,
                                                                          no_demo_sets, cookies_for):
    # Answered by another tier, the run would be stored as `smart` and the gate would compare the wrong answers.
    cfg = fast_config(tmp_path / "cfg", model, allowed=("fast", "smart"))
    client = make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_EVALS_DIR=no_demo_sets, ATRIUM_RESPONSE_CACHE="false")
    _prepare(client, cookies_for)
    bob = cookies_for("bob")
    r = client.post(f"{BASE}/runs", cookies=bob, json={"version": 1, "tier": "smart"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "tier_not_available" and "available: fast" in r.json()["detail"]
    with client.app.state.services.db.session() as s:
        assert list(s.exec(select(EvalRun))) == []
    assert client.post(f"{BASE}/runs", cookies=bob, json={"version": 1, "tier": "fast"}).status_code == 202
