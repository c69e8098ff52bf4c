"""Cancelling a run (POST …/runs/{id}/cancel): it reaches the run in whichever process runs it — here the request
goes to another app on the same database than the one answering — the case in progress is finished and kept, no
other case is started, the run stays `cancelled` (audited), resumable like a failed run; a finished or failed run is
a 409 with the reason, a second cancel changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlmodel import select

from backend.auth.principal import CLI_OWNER
from backend.db.models import AuditEvent
from tests.conftest import REPO
from tests.evals.conftest import wait_for_run
from tests.evals.test_review_attacks import _run_row
from tests.evals.test_runs import BASE, A, T, _prepare, make_app, scripted
from tests.llm.fakes import FakeOpenAI


@pytest.fixture
def gate():
    event = threading.Event()
    yield event
    event.set()  # never leave a request of the fake model waiting


@pytest.fixture
def held_model(gate):
    with FakeOpenAI(reply=scripted, gate=gate) as server:
        yield server


def _until(what, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_run_cancelled_from_another_process_stops_after_its_current_case_and_resumes_later(
        make_api_client, tmp_path, held_model, gate, no_demo_sets, cookies_for):
    runner = make_app(make_api_client, tmp_path, held_model, no_demo_sets)
    _prepare(runner, cookies_for)
    other = make_app(make_api_client, tmp_path, held_model, no_demo_sets, name="other-replica")
    bob = cookies_for("bob")
    run_id = runner.post(f"{BASE}/runs", cookies=bob, json={"version": 1}).json()["id"]
    _until(lambda: len(held_model.requests) == 1)  # the first case is being answered, held by the model

    r = other.post(f"{BASE}/runs/{run_id}/cancel", cookies=bob)
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["done"], r.json()["error"]) == ("cancelled", 0, "cancelled by bob")
    gate.set()
    tasks = runner.app.state.services.evals.tasks
    _until(lambda: run_id not in tasks)
    run = runner.get(f"{BASE}/runs/{run_id}", cookies=bob).json()
    # The case in progress was answered, checked and kept; no other case was asked.
    assert (run["status"], run["done"], run["total"], run["resumable"]) == ("cancelled", 1, 5, True), run
    assert [x["case_id"] for x in run["results"]] == ["c0"] and run["results"][0]["passed"] is True
    assert len(held_model.requests) == 1
    with runner.app.state.services.db.session() as s:
        events = list(s.exec(select(AuditEvent).where(AuditEvent.kind == "eval_run_cancelled")))
    assert [(e.subject, e.tenant, e.detail["run"], e.status) for e in events] == [("bob", T, run_id, 202)]

    # Cancelled again: nothing changes, nothing is audited.
    r = runner.post(f"{BASE}/runs/{run_id}/cancel", cookies=bob)
    assert (r.status_code, r.json()["status"], r.json()["done"]) == (200, "cancelled", 1), r.text

    # Resumed (on the other replica): only the four cases without a result; then it cannot be cancelled.
    assert other.post(f"{BASE}/runs/{run_id}/resume", cookies=bob).status_code == 202
    run = wait_for_run(other, T, A, run_id, bob)
    assert (run["status"], run["done"], run["passed"], run["error"]) == ("finished", 5, 2, None), run
    assert len(held_model.requests) == 4  # c0 once; the refusal (c3) asks no model
    r = runner.post(f"{BASE}/runs/{run_id}/cancel", cookies=bob)
    assert (r.status_code, r.json()["error"]) == (409, "run_finished") and "nothing to cancel" in r.json()["detail"]


def test_a_failed_run_is_not_cancelled_and_another_tenants_run_is_an_audited_404(make_api_client, tmp_path,
                                                                                 held_model, no_demo_sets,
                                                                                 cookies_for):
    client = make_app(make_api_client, tmp_path, held_model, no_demo_sets)
    bob, dave = cookies_for("bob"), cookies_for("dave")
    failed = _run_row(client, T, A, status="failed")
    r = client.post(f"{BASE}/runs/{failed}/cancel", cookies=bob)
    assert (r.status_code, r.json()["error"]) == (409, "run_not_running"), r.text
    assert "resume it" in r.json()["detail"]

    running = _run_row(client, T, A, status="running")
    url = f"/api/t/engineering/evals/eng-assistant/runs/{running}/cancel"
    r = client.post(url, cookies=dave)
    assert (r.status_code, r.json()["error"]) == (404, "run_not_found") and "SECRET" not in r.text
    services = client.app.state.services
    with services.db.session() as s:
        denied = list(s.exec(select(AuditEvent).where(AuditEvent.kind == "denied",
                                                      AuditEvent.reason == "other_tenants_run")))
        assert [(e.subject, e.tenant, e.route, e.status) for e in denied] == [("dave", "engineering", url, 404)]
    assert client.get(f"{BASE}/runs/{running}", cookies=bob).json()["status"] == "running"  # untouched


def test_ctrl_c_in_atrium_eval_run_leaves_the_run_cancelled_not_running(make_api_client, tmp_path, data_dir,
                                                                        held_model, no_demo_sets, cookies_for):
    app = make_app(make_api_client, tmp_path, held_model, no_demo_sets)
    _prepare(app, cookies_for)
    env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir), "ATRIUM_CONFIG_DIR": str(tmp_path / "cfg" / "config"),
           "ATRIUM_EVALS_DIR": no_demo_sets, "ATRIUM_RESPONSE_CACHE": "false"}
    cli = subprocess.Popen([sys.executable, "-m", "backend.cli", "eval", "run", "--tenant", T, "--assistant", A],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: len(held_model.requests) == 1 or cli.poll() is not None, timeout=240)
        assert cli.poll() is None, cli.communicate()
        cli.send_signal(signal.SIGINT)  # the first case is being answered (held by the model)
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, out + err
    assert "cancelled: run" in err and "stopped after 0 of 5 cases (status cancelled)" in err, err
    assert "Traceback" not in err, err
    [run] = app.get(f"{BASE}/runs", cookies=cookies_for("bob")).json()["runs"]
    assert (run["status"], run["error"], run["resumable"]) == (
        "cancelled", "cancelled with Ctrl-C in atrium eval run", True), run
    with app.app.state.services.db.session() as s:
        [event] = s.exec(select(AuditEvent).where(AuditEvent.kind == "eval_run_cancelled")).all()
    assert (event.subject, event.route, event.detail["run"]) == (CLI_OWNER, "cli:eval run", run["id"])
