"""Test cases over the API: written, read, changed and deleted by the tenant's prompt editors (audited), exported
and imported as YAML (all or nothing, each problem named), made from a rated exchange — and never seen or touched
from another tenant, even for an assistant or case id of the same name."""

from __future__ import annotations

import pytest
import yaml
from sqlmodel import select

from backend.db.models import AuditEvent, ChatTurn
from tests.conftest import session_token

T, A = "sales", "sales-assistant"
CASES = f"/api/t/{T}/evals/{A}/cases"


@pytest.fixture
def client(make_api_client, no_demo_sets):
    return make_api_client(ATRIUM_EVALS_DIR=no_demo_sets)


@pytest.fixture
def login_as(cookies_for):
    return cookies_for


def _events(client, kind: str) -> list[AuditEvent]:
    with client.app.state.services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.kind == kind)))


def test_an_editor_writes_reads_changes_and_deletes_a_case_and_each_write_is_audited(client, login_as):
    bob = login_as("bob")
    assert client.get(CASES, cookies=bob).json() == {"cases": []}
    r = client.post(CASES, cookies=bob, json={"question": "What can a rep approve?", "facts": ["10%"],
                                               "cite": ["pricing-rules.md"], "must_not": ["20%"]})
    assert r.status_code == 201, r.text
    case = r.json()
    assert (case["question"], case["facts"], case["must_refuse"], case["created_by"]) == \
        ("What can a rep approve?", ["10%"], False, "bob")
    r = client.put(f"{CASES}/{case['id']}", cookies=bob, json={"question": "What can a rep approve alone?",
                                                               "facts": ["up to 10%"]})
    assert r.status_code == 200 and r.json()["facts"] == ["up to 10%"] and r.json()["cite"] == []
    assert [c["question"] for c in client.get(CASES, cookies=bob).json()["cases"]] == ["What can a rep approve alone?"]
    updated = _events(client, "eval_case_updated")
    assert len(updated) == 1 and updated[0].detail["before"]["facts"] == ["10%"]
    assert updated[0].detail["after"]["facts"] == ["up to 10%"]
    r = client.delete(f"{CASES}/{case['id']}", cookies=bob)
    assert (r.status_code, r.json()) == (200, {"deleted": case["id"]})
    assert client.get(CASES, cookies=bob).json() == {"cases": []}
    assert client.delete(f"{CASES}/{case['id']}", cookies=bob).status_code == 404
    assert [len(_events(client, k)) for k in ("eval_case_created", "eval_case_deleted")] == [1, 1]


def test_bad_cases_are_refused_with_the_reason(client, login_as):
    bob = login_as("bob")
    r = client.post(CASES, cookies=bob, json={"question": "x", "fact": ["typo"]})  # a misspelt field
    assert r.status_code == 422 and "fact" in r.text
    r = client.post(CASES, cookies=bob, json={"question": "x", "facts": [" "]})
    assert r.status_code == 422 and "facts" in r.text
    assert client.post(f"/api/t/{T}/evals/no-such-assistant/cases", cookies=bob,
                       json={"question": "x", "facts": ["y"]}).status_code == 404
    # A member who is not an editor may not see the tests (they show how the assistant is checked).
    assert client.get(CASES, cookies=login_as("alice")).status_code == 403


def test_export_then_import_round_trips_and_import_is_all_or_nothing(client, login_as):
    bob = login_as("bob")
    for q in ("First?", "Second?"):
        client.post(CASES, cookies=bob, json={"question": q, "facts": ["a fact"], "must_refuse": q == "Second?"})
    exported = client.get(f"{CASES}/export", cookies=bob)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/yaml")
    data = yaml.safe_load(exported.text)
    assert data["assistant"] == A and [c["question"] for c in data["cases"]] == ["First?", "Second?"]
    assert data["cases"][1]["must_refuse"] is True and "must_not" not in data["cases"][0]  # defaults left out

    # The same file back: nothing changes. One case edited, one new: counted as such (as text/yaml).
    r = client.post(f"{CASES}/import", cookies=bob, json={"yaml": exported.text})
    assert r.json() == {"added": 0, "updated": 0, "unchanged": 2}
    data["cases"][0]["facts"] = ["another fact"]
    data["cases"].append({"id": "third", "question": "Third?", "cite": ["Pricing Rules"]})
    r = client.post(f"{CASES}/import", cookies=bob, content=yaml.safe_dump(data),
                    headers={"content-type": "text/yaml"})
    assert r.status_code == 200 and r.json() == {"added": 1, "updated": 1, "unchanged": 1}, r.text
    assert {c["id"] for c in client.get(CASES, cookies=bob).json()["cases"]} >= {"third"}

    # One bad case: nothing is imported, and every problem is named with its place.
    before = client.get(f"{CASES}/export", cookies=bob).text
    bad = {"cases": [{"question": "Fine?", "facts": ["x"]}, {"question": "", "facts": ["x"]},
                     {"question": "Typo?", "must_nto": ["x"]}]}
    r = client.post(f"{CASES}/import", cookies=bob, json={"yaml": yaml.safe_dump(bad)})
    assert r.status_code == 422, r.text
    wheres = [p["where"] for p in r.json()["problems"]]
    assert any(w.startswith("cases[2].question") for w in wheres) and any(w.startswith("cases[3]") for w in wheres)
    # A hand-written file's usual slips are explained with the fix in YAML's own words.
    r = client.post(f"{CASES}/import", cookies=bob,
                    content=b"cases:\n- question: What is our SLA?\n  facts: 99.9%\n"
                            b"  must_refuse: maybe\n  must_nto: [x]\n",
                    headers={"content-type": "text/yaml"})
    problems = {p["where"]: p["problem"] for p in r.json()["problems"]}
    assert "one `- item` per line" in problems["cases[1].facts"], problems
    assert "write true or false" in problems["cases[1].must_refuse"]
    assert "not a field of a case (question, history, facts" in problems["cases[1].must_nto"]
    assert client.get(f"{CASES}/export", cookies=bob).text == before
    r = client.post(f"{CASES}/import", cookies=bob, json={"yaml": "assistant: deal-desk\ncases: []"})
    assert r.status_code == 422 and r.json()["error"] == "wrong_assistant"
    r = client.post(f"{CASES}/import", cookies=bob, content=b"cases: [", headers={"content-type": "text/yaml"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_yaml"
    r = client.post(f"{CASES}/import", cookies=bob, content=b"x", headers={"content-type": "image/png"})
    assert r.status_code == 415


def test_another_tenants_editor_neither_sees_nor_changes_a_case_even_with_the_same_names(client, login_as):
    """The isolation inventory refuses the URL of another tenant; here engineering's editor acts in engineering,
    naming sales' assistant and case ids: nothing of sales is found or changed."""
    bob, dave = login_as("bob"), login_as("dave")
    case = client.post(CASES, cookies=bob, json={"question": "Secret sales question?", "facts": ["42%"]}).json()
    for method, url, body in [
        ("GET", f"/api/t/engineering/evals/{A}/cases", None),
        ("GET", f"/api/t/engineering/evals/{A}/cases/export", None),
        ("PUT", f"/api/t/engineering/evals/{A}/cases/{case['id']}", {"question": "hijack", "facts": ["x"]}),
        ("DELETE", f"/api/t/engineering/evals/{A}/cases/{case['id']}", None),
        ("PUT", f"/api/t/engineering/evals/eng-assistant/cases/{case['id']}", {"question": "hijack", "facts": ["x"]}),
        ("DELETE", f"/api/t/engineering/evals/eng-assistant/cases/{case['id']}", None),
    ]:
        r = client.request(method, url, cookies=dave, json=body)
        assert r.status_code == 404, (method, url, r.text)
        assert "Secret" not in r.text
    assert client.get("/api/t/engineering/evals/eng-assistant/cases", cookies=dave).json() == {"cases": []}
    assert client.get(CASES, cookies=bob).json()["cases"][0]["question"] == "Secret sales question?"


def test_a_rated_exchange_becomes_a_case_of_its_own_tenant_and_assistant_only(client, login_as):
    svc = client.app.state.services
    conv = svc.conversations
    alice = svc.principal_from_claims({"sub": "alice", "groups": ["sales"]})
    with svc.db.session() as s:
        turn = ChatTurn(tenant=T, subject="alice", assistant=A, prompt_version=1, channel="ui")
        s.add(turn)
        s.commit()
        s.refresh(turn)
    conv.create(alice, conversation_id="c1", tenant=T, assistant=A, title="q")
    conv.save_step(alice, "c1", step_id="q0", type="user_message", name="alice", output="Hi, I sell Growth.")
    conv.save_step(alice, "c1", step_id="a0", type="assistant_message", name="Atrium", output="Hello!")
    conv.save_step(alice, "c1", step_id="q1", type="user_message", name="alice", output="What can I approve?")
    conv.save_step(alice, "c1", step_id="a1", type="assistant_message", name="Atrium",
                   output="Up to 25%.\n\nSources: [1] Pricing"
                          "\n\n_Answer: quoted from the sources (grounded mode: no model wrote it)_",
                   turn_id=turn.id)
    assert conv.feedback(alice, "a1", 0, "it is 10%")
    turn_id = svc.conversations.feedback_report(svc.principal_from_claims(
        {"sub": "bob", "groups": ["sales", "sales-editors"]}), T)["items"][0]["turn_id"]
    assert turn_id == turn.id

    bob = login_as("bob")
    # The editor's form, prefilled: nothing is stored (an editor who looks and leaves leaves no empty case).
    r = client.get(f"{CASES}/from-feedback", cookies=bob, params={"turn_id": turn_id})
    assert r.status_code == 200, r.text
    draft = r.json()
    assert (draft["id"], draft["stored"], draft["facts"], draft["checks_nothing"]) == (None, False, [], True)
    assert draft["question"] == "What can I approve?"
    assert draft["history"] == [{"role": "user", "content": "Hi, I sell Growth."},
                                {"role": "assistant", "content": "Hello!"}]
    assert "rated not helpful" in draft["note"] and "it is 10%" in draft["note"]
    # The note is one line: the answer's breaks are spaces, the chat's "who answered" line is left out.
    assert draft["note"].endswith("The answer then was: Up to 25%. Sources: [1] Pricing")
    assert draft["source"] == {"kind": "feedback", "turn_id": turn_id}
    assert client.get(CASES, cookies=bob).json() == {"cases": []}
    with svc.db.session() as s:
        assert list(s.exec(select(AuditEvent).where(AuditEvent.kind == "eval_case_created"))) == []

    # Saved with what a good answer states: stored then, with where it came from.
    written = {k: draft[k] for k in ("question", "history", "note")} | {"facts": ["10%"], "cite": ["Pricing"]}
    r = client.post(f"{CASES}/from-feedback", cookies=bob, json={"turn_id": turn_id, "case": written})
    assert r.status_code == 201, r.text
    case = r.json()
    assert (case["facts"], case["cite"], case["checks_nothing"]) == (["10%"], ["Pricing"], False)
    assert case["source"] == {"kind": "feedback", "turn_id": turn_id} and case["history"] == draft["history"]
    assert [c["id"] for c in client.get(CASES, cookies=bob).json()["cases"]] == [case["id"]]
    # Without `case` (as before): the prefilled case itself, expecting nothing yet.
    r = client.post(f"{CASES}/from-feedback", cookies=bob, json={"turn_id": turn_id})
    assert r.status_code == 201 and r.json()["checks_nothing"] is True and r.json()["note"] == draft["note"]
    # Another assistant of the same tenant, and another tenant's editor with the same turn id: not found, whether
    # reading the draft or saving a case from it.
    assert client.post(f"/api/t/{T}/evals/deal-desk/cases/from-feedback", cookies=bob,
                       json={"turn_id": turn_id, "case": written}).status_code == 404
    assert client.get(f"/api/t/{T}/evals/deal-desk/cases/from-feedback", cookies=bob,
                      params={"turn_id": turn_id}).status_code == 404
    eng_editor = {"access_token": session_token("dave", {"sub": "dave",
                                                         "groups": ["engineering", "engineering-editors"]})}
    r = client.post("/api/t/engineering/evals/eng-assistant/cases/from-feedback", cookies=eng_editor,
                    json={"turn_id": turn_id})
    assert r.status_code == 404 and "Growth" not in r.text
    r = client.get("/api/t/engineering/evals/eng-assistant/cases/from-feedback", cookies=eng_editor,
                   params={"turn_id": turn_id})
    assert r.status_code == 404 and "Growth" not in r.text
