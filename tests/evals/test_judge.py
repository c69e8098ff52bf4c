"""The optional judge, against a model speaking OpenAI's wire protocol: a fact the offline check misses (stated in
other words) is graded stated by the judge, which the run names; its calls are internal usage rows on the member
who ran the evaluation; an unreadable verdict leaves the offline one; without a provider model there is no judge."""

from __future__ import annotations

import json

import pytest
import yaml
from sqlmodel import select

from backend.db.models import ChatTurn
from backend.evals.judge import SYSTEM
from tests.evals.conftest import wait_for_run
from tests.evals.test_runs import BASE, T, _prepare, make_app
from tests.llm.fakes import FakeOpenAI

QUESTION = "Who must approve a discount of 15 percent?"
PARAPHRASE = "The head of your sales team must sign off on it [1]."  # "Sales Manager" in other words


def judged(body: dict) -> tuple[str, str]:
    system = " ".join(str(m["content"]) for m in body["messages"] if m["role"] == "system")
    if system == SYSTEM:
        asked = json.loads(body["messages"][-1]["content"])
        if "unreadable" in asked["question"]:
            return "I think it is fine.", "stop"
        stated = "head of your sales team" in asked["answer"].lower()  # this judge reads meaning
        return json.dumps({"facts": [stated], "grounded": True, "why": "says who approves"}), "stop"
    return PARAPHRASE, "stop"


@pytest.fixture
def app(make_api_client, tmp_path, no_demo_sets, cookies_for):
    with FakeOpenAI(reply=judged) as model:
        client = make_app(make_api_client, tmp_path, model, no_demo_sets)
        _prepare(client, cookies_for)  # the five cases of test_runs, and the pricing rules
        cases = {"cases": [{"id": "para", "question": QUESTION + " (in other words)", "facts": ["Sales Manager"]},
                           {"id": "unreadable", "question": QUESTION + " (unreadable verdict)",
                            "facts": ["Sales Manager"]}]}
        r = client.post(f"{BASE}/cases/import", cookies=cookies_for("bob"), json={"yaml": yaml.safe_dump(cases)})
        assert r.json()["added"] == 2, r.text
        yield client


def test_the_judge_grades_what_the_offline_check_misses_and_is_named_and_paid_for(app, cookies_for):
    bob = cookies_for("bob")
    plain = wait_for_run(app, T, "sales-assistant",
                         app.post(f"{BASE}/runs", cookies=bob, json={"version": 1}).json()["id"], bob)
    r = app.post(f"{BASE}/runs", cookies=bob, json={"version": 1, "judge": True})
    assert r.status_code == 202 and r.json()["judge"] == "fast: openai/gpt-4o-mini", r.text
    run = wait_for_run(app, T, "sales-assistant", r.json()["id"], bob)
    assert run["status"] == "finished", run
    offline = {x["case_id"]: x for x in plain["results"]}
    graded = {x["case_id"]: x for x in run["results"]}
    assert offline["para"]["checks"]["facts"]["ok"] is False  # "sales manager" in other words: missed offline
    facts = graded["para"]["checks"]["facts"]
    assert (facts["ok"], facts["offline_ok"], facts["judge"]["items"]) == (True, False, [True])
    assert graded["para"]["passed"] is True
    unreadable = graded["unreadable"]["checks"]["facts"]
    assert unreadable["ok"] is False and unreadable["judge"]["ok"] is None  # the offline verdict stands
    # Each grading is an internal call, charged to bob; the run's own cost is its answers'.
    with app.app.state.services.db.session() as s:
        internal = list(s.exec(select(ChatTurn).where(ChatTurn.channel == "internal")))
    assert len(internal) == len([x for x in run["results"] if x["checks"]["facts"].get("judge")
                                 or x["checks"]["grounded"].get("judge")])
    assert internal and {(t.subject, t.prompt_name) for t in internal} == {("bob", "eval_judge")}
    assert run["tokens"] == plain["tokens"]


def test_no_judge_without_a_provider_model(api_client, login_as):
    r = api_client.post("/api/t/sales/evals/sales-assistant/runs", cookies=login_as("bob"),
                        json={"version": 1, "judge": True})
    assert r.status_code == 422 and r.json()["error"] == "no_judge", r.text
