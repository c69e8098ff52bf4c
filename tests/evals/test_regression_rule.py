"""One rule for what a regression is: `atrium eval run` (its exit 1, the cases it prints) and the release gate (its
`regressed` state, the cases it names) read the same two runs the same way — on a set where the side-by-side
comparison alone would differ: a case deleted since the runs (no longer one) and a case added after the candidate's
run that production passes (one, "not run")."""

from __future__ import annotations

from backend.evals.cli import report_regressions
from tests.api.test_release_gate import add_cases, as_, new_version, stored_run
from tests.api.test_release_gate import make_client as make_client  # noqa: F401 - the fixture

T, A = "sales", "sales-assistant"


def test_the_cli_and_the_gate_name_the_same_regressions(make_client, capsys):
    client = make_client({T: {"enabled": True, "min_score": None}})
    svc = client.app.state.services
    kept, broken, gone = add_cases(client, T, A, "bob", ["What discount can a rep give?", "Who approves 25%?",
                                                         "What did the old price list say?"])
    v2 = new_version(client, T, A, "bob")
    candidate = stored_run(client, T, A, v2, {kept: True, broken: False, gone: False})
    [late] = add_cases(client, T, A, "bob", ["What does Growth cost?"])  # after the candidate's run
    production = stored_run(client, T, A, 1, {kept: True, broken: True, gone: True, late: True})
    assert client.delete(f"/api/t/{T}/evals/{A}/cases/{gone}", headers=as_("bob")).status_code == 200

    gate = client.get(f"/api/t/{T}/evals/{A}/gate?version={v2}", headers=as_("bob")).json()
    assert (gate["state"], gate["run"]["id"], gate["against"]["id"]) == ("regressed", candidate, production)
    named = [c["id"] for c in gate["failing"]]
    assert named == [broken, late]

    capsys.readouterr()
    failed = report_regressions(svc, T, A, run={"id": candidate}, base={"id": production}, production=1)
    out = capsys.readouterr().out
    printed = [line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("REGRESSED")]
    assert (failed, sorted(printed)) == (len(named), sorted(named)), out
    assert "not run on this version (added after the run)" in out and "What does Growth cost?" in out, out

    # The side-by-side comparison alone would have blamed the deleted case and missed the late one: the two
    # rules really differ on this set, so the agreement above is not a coincidence.
    diff = svc.evals.compare(T, A, production, candidate)
    assert sorted(diff["regressed"]) == sorted([broken, gone])
