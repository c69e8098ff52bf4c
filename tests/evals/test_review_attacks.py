"""Issue 19 attacked as a careless user and as an attacker would: YAML bombs and odd files refused with the reason
(never a 500, never a hang), text PostgreSQL cannot store refused before it gets there, another tenant's (or
assistant's) runs unreachable by id from any route, API keys without prompts:write refused and audited, and the
release gate neither fooled by a run on another tier, another tenant or a draft, nor bypassed by a label's
casing or a blank reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import select

from backend.auth.principal import Principal
from backend.db.models import AuditEvent, EvalResult, EvalRun
from backend.db.repositories.evals import add_result, add_run
from backend.evals.gate import RunFacts, decide
from tests.api.test_release_gate import add_cases, as_, new_version, promote, stored_run
from tests.api.test_release_gate import make_client as make_client  # noqa: F401 - the fixture
from tests.conftest import _SCRUB, REPO

T, A = "sales", "sales-assistant"
CASES = f"/api/t/{T}/evals/{A}/cases"

_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.fixture
def client(make_api_client, no_demo_sets):
    return make_api_client(ATRIUM_EVALS_DIR=no_demo_sets)


@pytest.fixture
def pg_client(make_api_client, no_demo_sets, postgres_url):
    return make_api_client(ATRIUM_EVALS_DIR=no_demo_sets, DATABASE_URL=postgres_url, ATRIUM_SINGLE_NODE="true",
                           VECTOR_STORE="sqlite")


def _import(client, cookies, text: str | bytes, kind: str = "text/yaml"):
    body = text.encode() if isinstance(text, str) else text
    return client.post(f"{CASES}/import", cookies=cookies, content=body, headers={"content-type": kind})


@pytest.mark.parametrize("name, text, code", [
    ("flow nesting", "cases: " + "[" * 50_000, "invalid_yaml"),
    ("block nesting", "cases:\n  " + "- " * 20_000 + "x", "invalid_yaml"),
    ("mapping nesting", "cases: [" + "{a: " * 3_000 + "1" + "}" * 3_000 + "]", "invalid_yaml"),
    ("billion laughs as the assistant", _LAUGHS + "assistant: *i\ncases: []\n", "invalid_yaml"),
    ("billion laughs as the cases", _LAUGHS + "cases: *i\n", "invalid_cases"),
    ("billion laughs in a case", _LAUGHS + "cases: [{question: *i, history: *i, facts: *i, note: *i}]\n",
     "invalid_cases"),
    ("python object tag", "cases: [{question: !!python/object/apply:os.system [id]}]", "invalid_yaml"),
    ("10,000 cases", "cases:\n" + "".join(f"- {{question: q{i}, facts: [f]}}\n" for i in range(10_000)),
     "too_many_cases"),
    ("a NUL character", 'cases: [{question: "q\\0?", facts: [f]}]', "invalid_cases"),
])
def test_a_hostile_or_broken_file_is_a_4xx_naming_the_problem_and_imports_nothing(client, cookies_for, name, text,
                                                                                  code):
    bob = cookies_for("bob")
    r = _import(client, bob, text)
    assert r.status_code == 422, (name, r.status_code, r.text[:300])
    assert r.json()["error"] == code, (name, r.text[:300])
    assert len(r.content) < 100_000, name  # the reason, not a megabyte of the same error
    assert client.get(CASES, cookies=bob).json() == {"cases": []}


def test_non_utf8_and_oversized_files_are_refused_before_parsing(client, cookies_for):
    bob = cookies_for("bob")
    r = _import(client, bob, b"cases:\n - question: \xff\xfe")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_body") and "UTF-8" in r.json()["detail"]
    r = _import(client, bob, b"#" * 1_000_001)
    assert r.status_code == 413 and "1,000,000" in r.json()["detail"]


def test_text_postgresql_cannot_store_is_refused_with_the_reason_not_a_500(pg_client, cookies_for):
    bob = cookies_for("bob")
    for body in ({"question": "What can a rep approve?\x00", "facts": ["10%"]},
                 {"question": "q", "facts": ["10%\x00"]},
                 {"question": "q", "facts": ["10%"], "note": "\x00"},
                 {"question": "q", "facts": ["10%"], "history": [{"role": "user", "content": "hi\x00"}]}):
        r = pg_client.post(CASES, cookies=bob, json=body)
        assert r.status_code == 422 and "NUL" in r.text, (body, r.status_code, r.text[:200])
    r = _import(pg_client, bob, 'cases: [{question: "q\\0?", facts: [f]}]')
    assert r.status_code == 422 and "NUL" in r.text, r.text[:300]
    assert pg_client.get(CASES, cookies=bob).json() == {"cases": []}


def _run_row(client, tenant: str, assistant: str, *, version: int | None = 1, status: str = "finished") -> str:
    services = client.app.state.services
    run_id = uuid.uuid4().hex[:16]
    with services.db.session() as s:
        add_run(session=s, tenant=tenant, run=EvalRun(
            id=run_id, tenant=tenant, assistant=assistant, prompt_version=version, status=status,
            kb_version=services.evals.kb_version(tenant), case_ids=["c1"], total=1, done=1, passed=1, score=1.0,
            started_by="x"))
        add_result(session=s, tenant=tenant, result=EvalResult(run_id=run_id, case_id="c1", tenant=tenant,
                                                              answer=f"SECRET answer of {tenant}", passed=True))
        s.commit()
    return run_id


def test_another_tenants_or_assistants_run_is_found_by_no_route(client, cookies_for):
    """Each route with a run id, in the caller's own tenant, naming a run of another tenant or another assistant:
    404, nothing of it shown, and the run is not claimed (a resume would spend the caller's quota on it)."""
    sales_failed = _run_row(client, "sales", A, status="failed")
    sales_done = _run_row(client, "sales", A)
    eng = _run_row(client, "engineering", "eng-assistant")
    dave, bob = cookies_for("dave"), cookies_for("bob")
    E = "/api/t/engineering/evals/eng-assistant"
    D = f"/api/t/{T}/evals/deal-desk"
    attempts = [
        (dave, "GET", f"{E}/runs/{sales_done}"), (dave, "POST", f"{E}/runs/{sales_failed}/resume"),
        (dave, "POST", f"{E}/runs/{sales_failed}/cancel"), (bob, "POST", f"{D}/runs/{sales_done}/cancel"),
        (dave, "GET", f"{E}/compare?a={eng}&b={sales_done}"), (dave, "GET", f"{E}/compare?a={sales_done}&b={eng}"),
        (dave, "GET", f"/api/t/engineering/evals/{A}/runs/{sales_done}"),
        (bob, "GET", f"{D}/runs/{sales_done}"), (bob, "POST", f"{D}/runs/{sales_failed}/resume"),
        (bob, "GET", f"{D}/compare?a={sales_done}&b={sales_done}"),
        (bob, "GET", f"/api/t/{T}/evals/{A}/compare?a={sales_done}&b={eng}"),
        (bob, "POST", f"/api/t/{T}/evals/{A}/runs/{eng}/resume"),
    ]
    for cookies, method, url in attempts:
        r = client.request(method, url, cookies=cookies)
        assert r.status_code == 404, (method, url, r.status_code, r.text[:200])
        assert "SECRET" not in r.text, url
    assert [r["id"] for r in client.get(f"{E}/runs", cookies=dave).json()["runs"]] == [eng]
    with client.app.state.services.db.session() as s:
        statuses = {r.id: (r.status, r.owner) for r in s.exec(select(EvalRun))}
        probes = [(e.subject, e.tenant, e.route) for e in s.exec(select(AuditEvent).where(
            AuditEvent.kind == "denied", AuditEvent.reason == "other_tenants_run").order_by(AuditEvent.id))]
    assert statuses[sales_failed] == ("failed", None)
    # Another tenant's run id came from a leak or a guess: each such 404 is audited (one row per route, counted);
    # another assistant's run of the same tenant, or an assistant the tenant does not have, is a plain 404.
    assert set(probes) == {("dave", "engineering", f"{E}/runs/{sales_done}"),
                           ("dave", "engineering", f"{E}/runs/{sales_failed}/resume"),
                           ("dave", "engineering", f"{E}/runs/{sales_failed}/cancel"),
                           ("dave", "engineering", f"{E}/compare"), ("bob", T, f"/api/t/{T}/evals/{A}/compare"),
                           ("bob", T, f"/api/t/{T}/evals/{A}/runs/{eng}/resume")}, probes


def test_api_keys_need_prompts_write_for_every_evals_route_and_each_refusal_is_audited(client, cookies_for):
    services = client.app.state.services
    carol = Principal(subject="carol", name="Carol", tenants={"sales": frozenset({"member", "tenant_admin"})})
    headers = {scopes: {"Authorization": "Bearer " + services.keys.create(
        carol, "sales", scopes=list(scopes), name="", expires_in_days=None, route="/k", ip=None).token}
        for scopes in (("prompts:read",), ("chat", "retrieval", "ingest"), ("prompts:write",))}
    run = _run_row(client, "sales", A)
    routes = [("GET", CASES, None), ("POST", CASES, {"question": "q", "facts": ["f"]}),
              ("GET", f"{CASES}/export", None), ("POST", f"{CASES}/import", {"yaml": "cases: []"}),
              ("POST", f"{CASES}/from-feedback", {"turn_id": 1}), ("GET", f"{CASES}/from-feedback?turn_id=1", None),
              ("POST", f"/api/t/{T}/evals/{A}/runs", {"version": 1}), ("GET", f"/api/t/{T}/evals/{A}/runs", None),
              ("GET", f"/api/t/{T}/evals/{A}/runs/{run}", None),
              ("POST", f"/api/t/{T}/evals/{A}/runs/{run}/resume", None),
              ("POST", f"/api/t/{T}/evals/{A}/runs/{run}/cancel", None),
              ("GET", f"/api/t/{T}/evals/{A}/compare?a={run}&b={run}", None),
              ("GET", f"/api/t/{T}/evals/{A}/gate", None)]
    for scopes in (("prompts:read",), ("chat", "retrieval", "ingest")):
        for method, url, body in routes:
            with services.db.session() as s:
                before = len(list(s.exec(select(AuditEvent).where(AuditEvent.kind == "denied"))))
            r = client.request(method, url, headers=headers[scopes], json=body)
            assert r.status_code == 403, (scopes, method, url, r.status_code, r.text[:200])
            with services.db.session() as s:
                after = list(s.exec(select(AuditEvent).where(AuditEvent.kind == "denied")))
            assert len(after) == before + 1 and after[-1].status == 403, (scopes, method, url)
    assert client.get(CASES, headers=headers[("prompts:write",)]).status_code == 200
    assert client.get(CASES, cookies=cookies_for("alice")).status_code == 403  # a member, not an editor


# -- the release gate ------------------------------------------------------------------------------------------


def test_a_newer_run_on_another_tier_does_not_hide_a_regression_on_the_tier_production_was_tested_on():
    cases = {"c1": "What can a rep approve?", "c2": "Who approves 25%?"}
    both = {"c1": True, "c2": True}
    runs = [RunFacts("v-smart", 2, "finished", "kb", "smart", 1.0, both),
            RunFacts("v-fast", 2, "finished", "kb", "fast", 0.5, {"c1": True, "c2": False}),
            RunFacts("p-fast", 1, "finished", "kb", "fast", 1.0, both)]
    d = decide(enabled=True, min_score=None, version=2, production=1, kb_version="kb", runs=runs, cases=cases)
    assert (d.verdict.state, d.run.id, d.against.id) == ("regressed", "v-fast", "p-fast")
    assert [c["id"] for c in d.verdict.failing] == ["c2"]
    # Tested only on another tier than production: nothing to compare with, not a pass.
    d = decide(enabled=True, min_score=None, version=2, production=1, kb_version="kb", runs=[runs[0], runs[2]],
               cases=cases)
    assert d.verdict.state == "missing" and "same tier" in d.verdict.message


def test_a_run_graded_by_a_judge_is_compared_only_with_one_graded_the_same_way():
    """A judge model reads the answers, which a prompt can write to persuade it: a judged run of the candidate is
    no evidence against production's offline-graded run, and a regression in the offline grading is not hidden."""
    cases = {"c1": "What can a rep approve?", "c2": "Who approves 25%?"}
    both = {"c1": True, "c2": True}
    judged = RunFacts("v-judged", 2, "finished", "kb", None, 1.0, both, judged=True)
    offline = RunFacts("v-offline", 2, "finished", "kb", None, 0.5, {"c1": True, "c2": False})
    production = RunFacts("p", 1, "finished", "kb", None, 1.0, both)
    d = decide(enabled=True, min_score=None, version=2, production=1, kb_version="kb", runs=[judged, production],
               cases=cases)
    assert d.verdict.state == "missing" and "with a judge" in d.verdict.message
    d = decide(enabled=True, min_score=None, version=2, production=1, kb_version="kb",
               runs=[judged, offline, production], cases=cases)
    assert (d.verdict.state, d.run.id, [c["id"] for c in d.verdict.failing]) == ("regressed", "v-offline", ["c2"])


def test_runs_of_another_tenant_or_of_a_draft_are_no_evidence_and_the_labels_casing_is_no_way_around(make_client):
    client = make_client({"sales": {"enabled": True, "min_score": None}})
    c1, c2 = add_cases(client, T, A, "bob", ["What can a rep approve?", "Who approves 25%?"])
    v2 = new_version(client, T, A, "bob")
    stored_run(client, T, A, 1, {c1: True, c2: True})
    # Engineering's rows for an assistant of the same name and version, and a draft's run of sales: no evidence.
    stored_run(client, "engineering", A, v2, {c1: True, c2: True})
    draft = stored_run(client, T, A, v2, {c1: True, c2: True})
    with client.app.state.services.db.session() as s:
        s.execute(EvalRun.__table__.update().where(EvalRun.__table__.c.id == draft)
                  .values(prompt_version=None, draft={"body": "x", "config": {}}))
        s.commit()
    gate = client.get(f"/api/t/{T}/evals/{A}/gate?version={v2}", headers=as_("bob")).json()
    assert gate["state"] == "missing", gate
    for label, extra in (("Production", {"create": True}), ("PRODUCTION", {}), ("production%20", {}),
                         ("production.", {"create": True})):
        r = client.put(f"/api/t/{T}/prompts/{A}/labels/{label}", headers=as_("carol"), json={"version": v2, **extra})
        assert 400 <= r.status_code < 500 and r.status_code != 409, (label, r.status_code, r.text[:200])
    # A blank reason is no reason, even from a tenant admin.
    r = promote(client, "carol", v2, override_reason="   \n ")
    assert (r.status_code, r.json()["error"]) == (409, "release_gate")
    labels = client.get(f"/api/t/{T}/prompts/{A}", headers=as_("bob")).json()["labels"]
    assert labels.get("production") == 1 and set(labels) <= {"production", "staging"}


def _prompts_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "backend.cli", "prompts", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=300)


def test_prompts_import_does_not_move_a_gated_production_without_an_audited_override(tmp_path, prompts_root):
    """`atrium prompts import` with a labels.yaml that moves production is another way to release: for a tenant with
    a release gate (engineering, in the demo's tenants.yaml) it is refused, unless the operator gives a reason,
    which is audited like a tenant admin's override. A first import into an empty store is not a release."""
    env = {"ATRIUM_DATA_DIR": str(tmp_path / "data"), "ATRIUM_PROMPT_STORE": "database"}
    assert _prompts_cli(["import", str(prompts_root)], env).returncode == 0  # seeding an empty store
    folder = prompts_root / "engineering" / "eng-assistant"
    (folder / "v0002.md").write_text((folder / "v0001.md").read_text() + "\nAlways answer in one word.\n")
    (folder / "labels.yaml").write_text(yaml.safe_dump({"labels": {"production": 2, "staging": 1}, "history": [
        {"who": "mallory", "label": "production", "from": 1, "to": 2, "at": "2026-12-07T14:00:00Z"}]}))

    refused = _prompts_cli(["import", str(prompts_root)], env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "engineering/eng-assistant" in refused.stderr and "release gate" in refused.stderr
    assert refused.stderr.splitlines()[-1] == "nothing was imported"
    out = tmp_path / "out"
    assert _prompts_cli(["export", str(out)], env).returncode == 0
    assert yaml.safe_load((out / "engineering" / "eng-assistant" / "labels.yaml").read_text())["labels"][
        "production"] == 1
    assert not (out / "engineering" / "eng-assistant" / "v0002.md").exists()

    done = _prompts_cli(["import", str(prompts_root), "--override-gate", "hotfix, tested by hand (INC-42)"], env)
    assert done.returncode == 0, done.stderr
    assert _prompts_cli(["export", str(tmp_path / "out2")], env).returncode == 0
    assert yaml.safe_load((tmp_path / "out2" / "engineering" / "eng-assistant" / "labels.yaml").read_text())[
        "labels"]["production"] == 2
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'atrium.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT subject, tenant, detail FROM audit_event WHERE kind = "
                                    "'release_gate_overridden'")).all()
    engine.dispose()
    assert len(rows) == 1 and rows[0][1] == "engineering"
    detail = json.loads(rows[0][2]) if isinstance(rows[0][2], str) else rows[0][2]
    assert (detail["assistant"], detail["version"], detail["from"]) == ("eng-assistant", 2, 1)
    assert detail["reason"] == "hotfix, tested by hand (INC-42)"


def test_two_resumes_at_once_continue_the_run_once_and_charge_each_case_once(make_api_client, tmp_path,
                                                                           no_demo_sets, cookies_for):
    from concurrent.futures import ThreadPoolExecutor

    from tests.evals.conftest import wait_for_run
    from tests.evals.test_runs import BASE, _prepare, _usage, make_app, scripted
    from tests.llm.fakes import FakeOpenAI

    with FakeOpenAI(reply=scripted) as model:
        client = make_app(make_api_client, tmp_path, model, no_demo_sets, quotas={"user_requests_per_minute": 2})
        _prepare(client, cookies_for)
        bob, carol, frank = cookies_for("bob"), cookies_for("carol"), cookies_for("frank")
        run = wait_for_run(client, T, A, client.post(f"{BASE}/runs", cookies=bob, json={"version": 1}).json()["id"],
                           bob)
        assert run["status"] == "failed" and run["resumable"] is True, run
        # Another tenant's editor cannot resume it, whatever the URL says.
        assert client.post(f"/api/t/finance/evals/finance-assistant/runs/{run['id']}/resume",
                           cookies=frank).status_code == 404
        with ThreadPoolExecutor(2) as pool:
            codes = sorted(pool.map(lambda _: client.post(f"{BASE}/runs/{run['id']}/resume",
                                                          cookies=carol).status_code, range(2)))
        assert codes == [202, 409], codes
        done = wait_for_run(client, T, A, run["id"], carol)
        assert (done["status"], done["done"]) == ("finished", 5), done
        answered = [r for r in _usage(client) if r.outcome == "ok"]
        assert len(answered) == 5 and len(model.requests) == 4  # no case answered (or paid for) twice
