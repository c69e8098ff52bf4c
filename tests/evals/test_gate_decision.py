"""The release gate's decision (backend/evals/gate.py decide) from plain facts: each state, and which cases it names."""

from __future__ import annotations

from backend.evals.gate import RunFacts, decide

CASES = {"c1": "What discount can a rep give?", "c2": "Who approves 25%?", "c3": "What is the Growth plan price?"}


def run(id_: str, version: int | None, *, kb: str = "kb2", status: str = "finished", tier: str | None = None,
        passed: dict[str, bool] | None = None) -> RunFacts:
    passed = passed if passed is not None else {}
    score = sum(passed.values()) / len(passed) if passed else None
    return RunFacts(id_, version, status, kb, tier, score, passed)


def gate(runs, *, version=2, production=1, min_score=None, enabled=True, cases=CASES):
    return decide(enabled=enabled, min_score=min_score, version=version, production=production, kb_version="kb2",
                  runs=runs, cases=cases)


ALL = {"c1": True, "c2": True, "c3": True}


def test_off_unless_enabled_whatever_the_runs():
    d = gate([], enabled=False)
    assert (d.verdict.state, d.verdict.ok) == ("off", True)


def test_missing_without_a_run_of_the_version_and_without_one_of_production_to_compare_with():
    assert gate([run("p", 1, passed=ALL)]).verdict.state == "missing"
    d = gate([run("v", 2, passed=ALL)])
    assert (d.verdict.state, d.verdict.run) == ("missing", "v") and "Production (version 1)" in d.verdict.message
    assert gate([run("v", 2, status="failed", passed={}), run("p", 1, passed=ALL)]).verdict.state == "missing"
    # A draft's run is no evidence for a saved version.
    assert gate([run("d", None, passed=ALL), run("p", 1, passed=ALL)]).verdict.state == "missing"


def test_stale_when_the_only_finished_runs_are_on_an_older_knowledge_base():
    d = gate([run("v-old", 2, kb="kb1", passed=ALL), run("p", 1, passed=ALL)])
    assert (d.verdict.state, d.verdict.run, d.verdict.ok) == ("stale", "v-old", False)
    assert "older knowledge base" in d.verdict.message


def test_running_while_a_run_of_the_version_is_under_way():
    d = gate([run("v", 2, status="running"), run("p", 1, passed=ALL)])
    assert (d.verdict.state, d.verdict.run) == ("running", "v")


def test_regressed_names_each_case_production_passes_and_this_version_fails():
    d = gate([run("v", 2, passed={"c1": True, "c2": False, "c3": False}),
              run("p", 1, passed={"c1": True, "c2": True, "c3": False})])
    assert d.verdict.state == "regressed" and d.against.id == "p"
    assert d.verdict.failing == [{"id": "c2", "question": CASES["c2"], "why": "passes on production, fails on this "
                                                                          "version"}]
    assert "Who approves 25%?" in d.verdict.message


def test_a_case_added_after_the_run_that_production_passes_counts_as_not_run_and_a_deleted_one_is_ignored():
    d = gate([run("v", 2, passed={"c1": True, "gone": False}), run("p", 1, passed={"c1": True, "c2": True,
                                                                                   "gone": True})],
             cases={"c1": CASES["c1"], "c2": CASES["c2"]})
    assert [(c["id"], c["why"]) for c in d.verdict.failing] == [
        ("c2", "passes on production, not run on this version (added after the run)")]


def test_the_newest_finished_run_on_the_current_knowledge_base_is_judged_against_the_same_tier():
    runs = [run("v-new", 2, tier="fast", passed=ALL), run("v-old", 2, kb="kb1", passed={"c1": False}),
            run("p-smart", 1, tier="smart", passed=ALL), run("p-fast", 1, tier="fast", passed={"c1": True})]
    d = gate(runs)
    assert (d.verdict.state, d.run.id, d.against.id) == ("passed", "v-new", "p-fast")


def test_below_min_lists_the_failing_cases_and_passed_needs_the_minimum():
    runs = [run("v", 2, passed={"c1": True, "c2": False, "c3": False}),
            run("p", 1, passed={"c1": True, "c2": False, "c3": False})]
    d = gate(runs, min_score=0.5)
    assert d.verdict.state == "below_min" and [c["id"] for c in d.verdict.failing] == ["c2", "c3"]
    assert "33%" in d.verdict.message and "50%" in d.verdict.message
    assert gate(runs, min_score=0.3).verdict.state == "passed"
    assert gate(runs).verdict.state == "passed"


def test_the_first_production_needs_only_its_own_run():
    d = gate([run("v", 2, passed=ALL)], production=None)
    assert (d.verdict.state, d.against) == ("passed", None)
