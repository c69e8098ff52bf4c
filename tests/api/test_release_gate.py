"""The release gate over the API, in-process with real SQLite: promoting a version to production needs a passing run
of it on the current knowledge base (tenants.yaml `release_gate`). The runs here are stored rows (what a finished run
leaves: tests/evals covers how a run makes them); what is tested is the gate's reading of them and the label move it
guards: 409 naming the failing case, the audited override by a tenant admin, the four-eyes rule on top, off by
default, stale once the documents change."""

from __future__ import annotations

import time
import uuid

import pytest
import yaml
from sqlmodel import select

from backend.db.models import AuditEvent, EvalResult, EvalRun
from backend.db.repositories.evals import add_result, add_run
from tests.conftest import REPO, session_cookie_for
from tests.llm.fakes import make_config_dir


@pytest.fixture
def make_client(make_api_client, prompts_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "gate-tests-" + "g" * 40)
    empty = tmp_path / "no-demo-sets"
    empty.mkdir()

    def make(gated: dict[str, dict] | None = None):
        cfg = make_config_dir(tmp_path / "cfg", model_list=[{"model_name": "local",
                                                             "litellm_params": {"model": "local/smollm2"}}])
        tenants = yaml.safe_load((cfg / "tenants.yaml").read_text())
        for t in tenants["tenants"]:
            t["release_gate"] = (gated or {}).get(t["id"], {"enabled": False})
        (cfg / "tenants.yaml").write_text(yaml.safe_dump(tenants, sort_keys=False))
        return make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root), ATRIUM_CONFIG_DIR=str(cfg),
                               ATRIUM_EVALS_DIR=str(empty))
    return make


def as_(user: str) -> dict[str, str]:
    return {"Cookie": f"access_token={session_cookie_for(user)['access_token']}"}


def audit(client, kind: str) -> list[AuditEvent]:
    with client.app.state.services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)))


def new_version(client, tenant: str, assistant: str, user: str) -> int:
    url = f"/api/t/{tenant}/prompts/{assistant}"
    latest = client.get(url, headers=as_(user)).json()["latest"]
    v = client.get(f"{url}/versions/{latest}", headers=as_(user)).json()
    r = client.post(f"{url}/versions", headers=as_(user), json={
        "body": v["body"] + "\nBe brief.\n", "config": v["config"], "message": "be brief", "base_version": latest})
    assert r.status_code == 201, r.text
    return r.json()["version"]


def add_cases(client, tenant: str, assistant: str, user: str, questions: list[str]) -> list[str]:
    ids = []
    for q in questions:
        r = client.post(f"/api/t/{tenant}/evals/{assistant}/cases", headers=as_(user), json={"question": q,
                                                                                             "facts": ["x"]})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def stored_run(client, tenant: str, assistant: str, version: int, passed: dict[str, bool], *,
               kb: str | None = None, status: str = "finished") -> str:
    """A run as the runner leaves it when done: the row and one result per case."""
    services = client.app.state.services
    run_id = uuid.uuid4().hex[:16]
    n = sum(passed.values())
    with services.db.session() as s:
        add_run(session=s, tenant=tenant, run=EvalRun(
            id=run_id, tenant=tenant, assistant=assistant, prompt_version=version, status=status,
            kb_version=kb if kb is not None else services.evals.kb_version(tenant), case_ids=list(passed),
            total=len(passed), done=len(passed), passed=n, score=n / len(passed), started_by="bob"))
        for case_id, ok in passed.items():
            add_result(session=s, tenant=tenant, result=EvalResult(run_id=run_id, case_id=case_id, tenant=tenant,
                                                                  answer="…", passed=ok))
        s.commit()
    time.sleep(0.01)  # runs are ordered by their creation time
    return run_id


def promote(client, user: str, version: int, *, tenant="sales", assistant="sales-assistant", **extra):
    return client.put(f"/api/t/{tenant}/prompts/{assistant}/labels/production", headers=as_(user),
                      json={"version": version, **extra})


QUESTIONS = ["What discount can a rep give?", "Who approves 25%?", "What does Growth cost?"]


def test_the_gate_is_off_by_default_and_production_moves_as_before(make_client):
    client = make_client()
    v2 = new_version(client, "sales", "sales-assistant", "bob")
    gate = client.get(f"/api/t/sales/evals/sales-assistant/gate?version={v2}", headers=as_("bob")).json()
    assert (gate["enabled"], gate["state"]) == (False, "off")
    r = promote(client, "bob", v2)
    assert r.status_code == 200 and r.json()["gate"] is None
    assert audit(client, "release_gate_overridden") == []


def test_a_regressing_version_is_refused_naming_the_case_and_a_passing_one_is_promoted(make_client):
    client = make_client({"sales": {"enabled": True, "min_score": None}})
    c1, c2, c3 = add_cases(client, "sales", "sales-assistant", "bob", QUESTIONS)
    v2 = new_version(client, "sales", "sales-assistant", "bob")

    r = promote(client, "bob", v2)  # no run at all
    assert r.status_code == 409 and r.json()["error"] == "release_gate" and r.json()["state"] == "missing"
    assert "no finished test run" in r.json()["detail"]

    prod = stored_run(client, "sales", "sales-assistant", 1, {c1: True, c2: True, c3: False})
    bad = stored_run(client, "sales", "sales-assistant", v2, {c1: True, c2: False, c3: True})
    gate = client.get(f"/api/t/sales/evals/sales-assistant/gate?version={v2}", headers=as_("bob")).json()
    assert (gate["state"], gate["run"]["id"], gate["against"]["id"]) == ("regressed", bad, prod)
    r = promote(client, "bob", v2)
    assert r.status_code == 409, r.text
    body = r.json()
    assert (body["error"], body["state"], body["run"]) == ("release_gate", "regressed", bad)
    assert body["failing"] == [{"id": c2, "question": "Who approves 25%?",
                                "why": "passes on production, fails on this version"}]
    assert "Who approves 25%?" in body["detail"]
    # The refusal says what to do next, for an editor.
    assert "To release it: fix the prompt, save it as a new version and run its tests." in body["detail"]
    assert "Or ask a tenant admin of the department to promote it anyway with a reason." in body["detail"]
    refused = audit(client, "release_gate_refused")
    assert [(e.subject, e.status, e.detail["state"], e.detail["failing"]) for e in refused] == [
        ("bob", 409, "missing", []), ("bob", 409, "regressed", [c2])]
    labels = client.get("/api/t/sales/prompts/sales-assistant", headers=as_("bob")).json()["labels"]
    assert labels["production"] == 1  # nothing moved

    good = stored_run(client, "sales", "sales-assistant", v2, {c1: True, c2: True, c3: True})
    r = promote(client, "bob", v2)
    assert r.status_code == 200, r.text
    assert r.json()["gate"] == {"state": "passed", "run": good, "overridden": False}
    assert audit(client, "prompt_label_moved")[-1].detail["gate"]["run"] == good


def test_an_editor_cannot_override_a_tenant_admin_can_with_a_reason_and_it_is_audited(make_client):
    client = make_client({"sales": {"enabled": True, "min_score": 0.9}})
    c1, c2, c3 = add_cases(client, "sales", "sales-assistant", "bob", QUESTIONS)
    v2 = new_version(client, "sales", "sales-assistant", "bob")
    stored_run(client, "sales", "sales-assistant", 1, {c1: True, c2: False, c3: False})
    run = stored_run(client, "sales", "sales-assistant", v2, {c1: True, c2: True, c3: False})
    r = promote(client, "bob", v2, override_reason="urgent fix")
    assert r.status_code == 403 and r.json()["error"] == "release_gate_override"
    assert "only a tenant admin" in r.json()["detail"]
    assert audit(client, "denied")[-1].reason == "release_gate_override"

    r = promote(client, "carol", v2)  # an admin without a reason is refused like anyone
    assert r.status_code == 409 and r.json()["state"] == "below_min"
    assert "A tenant admin may promote it anyway with a reason (override_reason; audited)." in r.json()["detail"]
    assert "fix the prompt" in r.json()["detail"]
    assert [c["id"] for c in r.json()["failing"]] == [c3]

    r = promote(client, "carol", v2, override_reason="  The price list changed today; c3 is fixed in v3.  ")
    assert r.status_code == 200, r.text
    assert r.json()["gate"] == {"state": "below_min", "run": run, "overridden": True}
    [event] = audit(client, "release_gate_overridden")
    assert (event.subject, event.tenant, event.status) == ("carol", "sales", 200)
    assert event.detail["reason"] == "The price list changed today; c3 is fixed in v3."
    assert (event.detail["version"], event.detail["state"], event.detail["run"]) == (v2, "below_min", run)
    assert event.detail["failing"] == [c3]


def test_with_require_approval_the_override_is_still_a_second_persons(make_client):
    client = make_client({"finance": {"enabled": True}})
    url = "/api/t/finance/prompts/finance-assistant"
    mine = new_version(client, "finance", "finance-assistant", "fiona")  # the tenant admin wrote it herself
    r = promote(client, "fiona", mine, tenant="finance", assistant="finance-assistant", override_reason="trust me")
    assert r.status_code == 403 and r.json()["error"] == "approval_required"
    assert audit(client, "release_gate_overridden") == []

    theirs = new_version(client, "finance", "finance-assistant", "frank")  # an editor's: fiona is the second person
    r = promote(client, "frank", theirs, tenant="finance", assistant="finance-assistant", override_reason="please")
    assert r.status_code == 403 and r.json()["error"] == "approval_required"
    r = promote(client, "fiona", theirs, tenant="finance", assistant="finance-assistant")
    assert r.status_code == 409 and r.json()["state"] == "missing"
    r = promote(client, "fiona", theirs, tenant="finance", assistant="finance-assistant",
                override_reason="reviewed the diff with Frank")
    assert r.status_code == 200, r.text
    assert client.get(url, headers=as_("fiona")).json()["labels"]["production"] == theirs
    [event] = audit(client, "release_gate_overridden")
    assert (event.subject, event.detail["state"]) == ("fiona", "missing")


def test_a_run_on_an_older_knowledge_base_is_stale_and_a_rollback_is_not_gated(make_client):
    client = make_client({"sales": {"enabled": True}})
    c1, c2, c3 = add_cases(client, "sales", "sales-assistant", "bob", QUESTIONS)
    v2 = new_version(client, "sales", "sales-assistant", "bob")
    stored_run(client, "sales", "sales-assistant", 1, dict.fromkeys((c1, c2, c3), True))
    stored_run(client, "sales", "sales-assistant", v2, dict.fromkeys((c1, c2, c3), True))
    gate = f"/api/t/sales/evals/sales-assistant/gate?version={v2}"
    assert client.get(gate, headers=as_("bob")).json()["state"] == "passed"

    # The knowledge base changes: a new document, ingested and ready.
    doc = REPO / "demo" / "corpus" / "sales"
    path = sorted(doc.glob("*.md"))[0]
    r = client.post("/api/t/sales/documents", headers=as_("carol"),
                    files={"file": ("new-" + path.name, path.read_bytes(), "text/markdown")})
    assert r.status_code == 202, r.text
    for _ in range(600):
        docs = client.get("/api/t/sales/documents", headers=as_("carol")).json()["documents"]
        if docs and all(d["status"] == "ready" for d in docs):
            break
        time.sleep(0.2)
    state = client.get(gate, headers=as_("bob")).json()
    assert state["state"] == "stale" and "older knowledge base" in state["message"]
    assert promote(client, "bob", v2).json()["state"] == "stale"

    # Production went to v2 once (an admin's override): going back to v1 is a rollback, not gated.
    assert promote(client, "carol", v2, override_reason="hotfix").status_code == 200
    assert client.get("/api/t/sales/evals/sales-assistant/gate?version=1", headers=as_("bob")).json()["state"] == \
        "passed"
    r = promote(client, "bob", 1)
    assert r.status_code == 200 and r.json()["gate"] is None


def test_the_gate_route_needs_prompt_editing_rights_and_an_existing_version(make_client):
    client = make_client({"sales": {"enabled": True}})
    assert client.get("/api/t/sales/evals/sales-assistant/gate", headers=as_("alice")).status_code == 403
    r = client.get("/api/t/sales/evals/sales-assistant/gate?version=99", headers=as_("bob"))
    assert r.status_code == 404 and r.json()["error"] == "version_not_found"
    r = client.get("/api/t/sales/evals/no-such/gate", headers=as_("bob"))
    assert r.status_code == 404 and r.json()["error"] == "assistant_not_found"
    state = client.get("/api/t/sales/evals/sales-assistant/gate", headers=as_("bob")).json()
    assert (state["enabled"], state["version"], state["production"]) == (True, 1, 1)
