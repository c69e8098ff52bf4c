"""/api/t/{tenant}/prompts and the /studio page, in-process: permissions, conflicts, diff, approval, try."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import re
import shutil
from pathlib import Path

import pytest
from sqlmodel import select

from backend.auth.api_keys import issue_key
from backend.db.models import AuditEvent, ChatTurn
from tests.conftest import session_cookie_for
from tests.prompts import replica

BASE = "/api/t/sales/prompts"
SA = f"{BASE}/sales-assistant"


@pytest.fixture
def client(make_api_client, prompts_root, monkeypatch):
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "prompt-tests-" + "z" * 40)
    return make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root))


def as_(user: str) -> dict[str, str]:
    return {"Cookie": f"access_token={session_cookie_for(user)['access_token']}"}


def key(client, tenant: str, *scopes: str) -> dict[str, str]:
    issued = issue_key(db=client.app.state.services.db, tenant=tenant, scopes=list(scopes), name="test")
    return {"Authorization": f"Bearer {issued.token}"}


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def audit(client, kind: str) -> list[AuditEvent]:
    with client.app.state.services.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id)))


def new_version(client, user="bob", *, base=1, add="\nBe brief.\n", url=SA, **config):
    v = client.get(f"{url}/versions/{base}", headers=as_(user)).json()
    return client.post(f"{url}/versions", headers=as_(user), json={
        "body": v["body"] + add, "config": {**v["config"], **config}, "message": f"add {add.strip()}",
        "base_version": base})


# -- reading -------------------------------------------------------------------------------------------


def test_members_read_their_tenants_prompts(client):
    r = client.get(BASE, headers=as_("alice"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [a["name"] for a in body["assistants"]] == ["sales-assistant", "deal-desk"]
    assert body["assistants"][0]["labels"] == {"production": 1, "staging": 1}
    detail = client.get(SA, headers=as_("alice")).json()
    assert detail["versions"][0]["version"] == 1 and detail["you"]["can_write"] is False
    assert set(detail["variables_available"]) == {"user_name", "tenant_name", "today", "context"}
    v1 = client.get(f"{SA}/versions/1", headers=as_("alice")).json()
    assert "{{context}}" in v1["body"] and v1["config"]["tier"] == "local"
    assert v1["labels"] == ["production", "staging"]
    assert client.get(f"{SA}/versions/7", headers=as_("alice")).status_code == 404


@pytest.mark.parametrize("user", ["erin", "dave", "nobody"])
def test_other_tenants_are_refused_and_audited(client, user):
    r = client.get(BASE, headers=as_(user))
    assert r.status_code == 403 and r.json()["error"] == "tenant_mismatch"
    assert any(e.subject == user and e.tenant == "sales" for e in audit(client, "denied"))
    assert client.get("/api/t/sales/prompts", headers={}).status_code == 401


@pytest.mark.parametrize("name", ["nope", "..", "SALES-assistant", "eng-assistant"])
def test_unknown_or_foreign_assistants_are_404(client, name):
    assert client.get(f"{BASE}/{name}", headers=as_("bob")).status_code in (404, 405)


# -- writing and permissions -----------------------------------------------------------------------------


def test_members_cannot_write_editors_and_admins_can(client, prompts_root):
    before = snapshot(prompts_root)
    r = new_version(client, "alice")
    assert r.status_code == 403 and r.json()["error"] == "missing_role"
    r = client.put(f"{SA}/labels/production", headers=as_("alice"), json={"version": 1})
    assert r.status_code == 403
    r = client.post(f"{SA}/try", headers=as_("alice"), json={"question": "hi", "version": 1})
    assert r.status_code == 403
    assert snapshot(prompts_root) == before

    r = new_version(client, "bob")
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["author"] == "bob"
    r = new_version(client, "carol", base=2, add="\nCarol was here.\n")
    assert r.status_code == 201 and r.json()["version"] == 3
    r = client.put(f"{SA}/labels/production", headers=as_("bob"), json={"version": 3})
    assert r.status_code == 200 and r.json()["labels"]["production"] == 3


def test_api_key_scopes(client):
    read, chat_only = key(client, "sales", "prompts:read"), key(client, "sales", "chat")
    write, foreign = key(client, "sales", "prompts:write"), key(client, "engineering", "prompts:write")
    assert client.get(SA, headers=read).status_code == 200
    assert client.get(SA, headers=write).status_code == 200
    r = client.get(SA, headers=chat_only)
    assert r.status_code == 403 and r.json()["error"] == "missing_scope"
    v1 = client.get(f"{SA}/versions/1", headers=read).json()
    payload = {"body": v1["body"] + "\nkey\n", "config": v1["config"], "message": "by key", "base_version": 1}
    r = client.post(f"{SA}/versions", headers=read, json=payload)
    assert r.status_code == 403 and r.json()["error"] == "missing_scope"
    r = client.post(f"{SA}/versions", headers=foreign, json=payload)
    assert r.status_code == 403 and r.json()["error"] == "tenant_mismatch"
    r = client.post(f"{SA}/versions", headers=write, json=payload)
    assert r.status_code == 201 and r.json()["author"].startswith("key:")
    assert client.put(f"{SA}/labels/staging", headers=write, json={"version": 2}).status_code == 200


def test_conflict_is_409_with_the_current_latest(client, prompts_root):
    assert new_version(client, "bob").status_code == 201
    before = snapshot(prompts_root)
    r = new_version(client, "carol", add="\nCarol's idea.\n")
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "version_conflict" and body["latest_version"] == 2 and body["base_version"] == 1
    assert body["latest"]["author"] == "bob" and "bob" in body["detail"]
    assert snapshot(prompts_root) == before, "nothing written on conflict"
    v = client.get(f"{SA}/versions/2", headers=as_("bob")).json()
    r = client.post(f"{SA}/versions", headers=as_("bob"), json={
        "body": v["body"] + "x\n", "config": v["config"], "message": "from nowhere", "base_version": 99})
    assert r.status_code == 422 and "version 99 does not exist; the latest is 2" in r.text  # not a "conflict"
    assert snapshot(prompts_root) == before


def test_two_app_processes_saving_on_the_same_base_one_201_one_409(prompts_root, tmp_path):
    """Two replicas (separate processes, each its own app) share the prompts folder."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = []
    for tag in ("r1", "r2"):
        (tmp_path / tag).mkdir()
        procs.append(ctx.Process(target=replica.api_save,
                                 args=(str(prompts_root), str(tmp_path / tag), barrier, tag, results)))
    for p in procs:
        p.start()
    outcomes = sorted((results.get(timeout=180) for _ in procs), key=lambda o: o[1])
    for p in procs:
        p.join(60)
    (winner, won, saved), (loser, lost, conflict) = outcomes
    assert (won, lost) == (201, 409), outcomes
    assert saved["version"] == 2 and saved["author"] == "bob"
    assert conflict["error"] == "version_conflict" and conflict["latest_version"] == 2
    assert conflict["latest"]["message"] == winner
    body = (prompts_root / "sales" / "sales-assistant" / "v0002.md").read_text()
    assert winner in body and loser not in body
    assert not (prompts_root / "sales" / "sales-assistant" / "v0003.md").exists()


def test_invalid_drafts_are_422_with_every_problem(client, prompts_root):
    before = snapshot(prompts_root)
    v1 = client.get(f"{SA}/versions/1", headers=as_("bob")).json()
    r = client.post(f"{SA}/versions", headers=as_("bob"), json={
        "body": v1["body"] + "\n{{salary}} and {{ user_name\n",
        "config": {**v1["config"], "tier": "gold", "max_tokens": -1}, "message": " ", "base_version": 1})
    assert r.status_code == 422
    problems = r.json()["problems"]
    fields = [p["field"] for p in problems]
    assert {"message", "tier", "max_tokens", "body"} <= set(fields)
    text = " ".join(p["message"] for p in problems)
    assert "{{salary}}" in text and "'gold' is not allowed for Sales" in text and "never closed" in text
    assert snapshot(prompts_root) == before


@pytest.mark.parametrize(("value", "said"), [
    (12.5, "12.5 is not a whole number: use a whole number of tokens between 1 and 32,000"),
    (0, "0 is out of range: use a whole number of tokens between 1 and 32,000"),
    (99999, "99,999 is out of range: use a whole number of tokens between 1 and 32,000"),
    (None, "enter a whole number of tokens between 1 and 32,000"),
])
def test_the_answer_length_is_refused_in_the_editors_words(client, prompts_root, value, said):
    """12.5 is not quietly saved as 12, and the limits are said as the form says them (not pydantic's wording)."""
    before = snapshot(prompts_root)
    r = new_version(client, "bob", max_tokens=value)
    assert r.status_code == 422, r.text
    problems = {p["field"]: p["message"] for p in r.json()["problems"]}
    assert problems == {"max_tokens": said}
    assert "Input should" not in r.text and "fractional" not in r.text
    assert snapshot(prompts_root) == before
    r = client.post(f"{SA}/preview", headers=as_("bob"), json={
        "body": "Hi {{context}}", "config": {"description": "d", "tier": "local", "variables": ["context"],
                                             "max_tokens": value}})
    assert r.json()["problems"] == [{"field": "max_tokens", "message": said}]


def test_a_temperature_out_of_range_is_said_with_its_limits(client):
    r = new_version(client, "bob", temperature=3)
    assert r.status_code == 422
    assert {p["field"]: p["message"] for p in r.json()["problems"]} == \
        {"temperature": "3 is out of range: use a number between 0 and 2"}


def test_label_moves_and_saves_are_audited_with_before_and_after(client):
    assert new_version(client, "bob").status_code == 201
    created = audit(client, "prompt_version_created")[-1]
    assert created.subject == "bob" and created.tenant == "sales"
    assert created.detail["before"]["version"] == 1 and created.detail["after"]["version"] == 2
    r = client.put(f"{SA}/labels/production", headers=as_("bob"), json={"version": 2})
    assert r.status_code == 200 and r.json()["from"] == 1
    moved = audit(client, "prompt_label_moved")[-1]
    assert moved.detail == {"assistant": "sales-assistant", "label": "production", "before": 1, "after": 2}
    history = client.get(SA, headers=as_("alice")).json()["history"]
    assert history[0]["who"] == "bob" and (history[0]["from"], history[0]["to"]) == (1, 2)
    r = client.put(f"{SA}/labels/Bad..Label", headers=as_("bob"), json={"version": 1, "create": True})
    assert r.status_code == 422
    # A typo of an existing label is refused; a new label needs "create".
    r = client.put(f"{SA}/labels/prod", headers=as_("bob"), json={"version": 1})
    assert (r.status_code, r.json()["error"]) == (422, "unknown_label") and "production" in r.json()["detail"]
    assert "prod" not in client.get(SA, headers=as_("alice")).json()["labels"]
    r = client.put(f"{SA}/labels/canary", headers=as_("bob"), json={"version": 2, "create": True})
    assert r.status_code == 200 and client.get(SA, headers=as_("alice")).json()["labels"]["canary"] == 2
    assert client.put(f"{SA}/labels/production", headers=as_("bob"), json={"version": 9}).status_code == 404


def test_diff_content(client):
    assert new_version(client, "bob", add="\nAlways answer in English.\n", temperature=0.7,
                       signoff="-- Desk").status_code == 201
    r = client.get(f"{SA}/diff", params={"from": 1, "to": 2}, headers=as_("alice"))
    assert r.status_code == 200
    d = r.json()
    assert "+Always answer in English." in d["unified"] and d["unified"].startswith("--- v0001.md\n+++ v0002.md")
    inserted = [row for row in d["rows"] if row["op"] == "insert"]
    assert inserted[-1]["right"] == "Always answer in English." and inserted[-1]["left"] is None
    assert all(row["left"] == row["right"] for row in d["rows"] if row["op"] == "equal")
    settings = {s["field"]: (s["from"], s["to"]) for s in d["settings"]}
    assert settings == {"temperature": (0.2, 0.7), "signoff": (None, "-- Desk")}
    assert d["stats"]["added"] == 2 and d["stats"]["removed"] == 0 and not d["identical"]
    same = client.get(f"{SA}/diff", params={"from": 2, "to": 2}, headers=as_("alice")).json()
    assert same["identical"] and same["unified"] == ""
    assert client.get(f"{SA}/diff", params={"from": 1, "to": 5}, headers=as_("alice")).status_code == 404


def test_preview_validates_and_diffs_a_draft_without_saving(client, prompts_root):
    before = snapshot(prompts_root)
    v1 = client.get(f"{SA}/versions/1", headers=as_("bob")).json()
    r = client.post(f"{SA}/preview", headers=as_("bob"), json={
        "body": v1["body"].replace("say you don't know", "say so"), "config": v1["config"], "base_version": 1})
    assert r.status_code == 200 and r.json()["ok"]
    ops = {row["op"] for row in r.json()["diff"]["rows"]}
    assert "replace" in ops
    bad = client.post(f"{SA}/preview", headers=as_("bob"), json={"body": "{{nope}}", "config": v1["config"]})
    assert bad.json()["ok"] is False and "{{nope}}" in bad.json()["problems"][0]["message"]
    assert snapshot(prompts_root) == before


def test_require_approval_needs_a_second_tenant_admin(client):
    fa = "/api/t/finance/prompts/finance-assistant"
    r = new_version(client, "frank", url=fa)
    assert r.status_code == 201
    r = client.put(f"{fa}/labels/production", headers=as_("frank"), json={"version": 2})
    assert r.status_code == 403 and r.json()["error"] == "approval_required"
    assert "tenant admin" in r.json()["detail"]
    assert client.put(f"{fa}/labels/staging", headers=as_("frank"), json={"version": 2}).status_code == 200
    r = client.put(f"{fa}/labels/production", headers=as_("fiona"), json={"version": 2})
    assert r.status_code == 200, r.text
    r = new_version(client, "fiona", url=fa, base=2, add="\nFiona's change.\n")
    assert r.status_code == 201
    r = client.put(f"{fa}/labels/production", headers=as_("fiona"), json={"version": 3})
    assert r.status_code == 403 and "second person" in r.json()["detail"]
    assert client.get(fa, headers=as_("fiona")).json()["labels"]["production"] == 2
    denied = [e for e in audit(client, "denied") if e.reason == "approval_required"]
    assert [e.subject for e in denied] == ["frank", "fiona"]
    # Tenants without the rule: an editor promotes their own version.
    assert new_version(client, "bob").status_code == 201
    assert client.put(f"{SA}/labels/production", headers=as_("bob"), json={"version": 2}).status_code == 200


def test_an_api_key_acts_for_its_creator_under_the_four_eyes_rule(client):
    """fiona cannot ship her own version by minting a key for herself, nor a key's version by herself."""
    fa = "/api/t/finance/prompts/finance-assistant"
    assert new_version(client, "fiona", url=fa, add="\nFiona's own.\n").status_code == 201
    r = client.post("/api/t/finance/keys", headers=as_("fiona"), json={"scopes": ["admin", "prompts:write"]})
    assert r.status_code == 201, r.text
    fionas_key = {"Authorization": f"Bearer {r.json()['token']}"}
    r = client.put(f"{fa}/labels/production", headers=fionas_key, json={"version": 2})
    assert r.status_code == 403 and "second person" in r.json()["detail"]
    # A version saved with her key is hers too: she cannot promote it with her session either.
    v = client.get(f"{fa}/versions/2", headers=fionas_key).json()
    r = client.post(f"{fa}/versions", headers=fionas_key, json={
        "body": v["body"] + "\nVia the key.\n", "config": {**v["config"], "author_for": "someone-else"},
        "message": "via key", "base_version": 2})
    assert r.status_code == 201, r.text
    saved = client.get(f"{fa}/versions/3", headers=as_("fiona")).json()["config"]
    assert saved["author"].startswith("key:") and saved["author_for"] == "fiona"  # not what the body claimed
    r = client.put(f"{fa}/labels/production", headers=as_("fiona"), json={"version": 3})
    assert r.status_code == 403 and "second person" in r.json()["detail"]
    # Another admin's key (a CLI key has no person behind it) may approve.
    cli_key = key(client, "finance", "admin", "prompts:write")
    assert client.put(f"{fa}/labels/production", headers=cli_key, json={"version": 3}).status_code == 200
    assert client.get(fa, headers=as_("fiona")).json()["labels"]["production"] == 3


def _turn_count(client) -> int:
    with client.app.state.services.db.session() as s:
        return len(list(s.exec(select(ChatTurn))))


def test_try_answers_with_a_draft_or_a_version_and_saves_nothing_but_its_usage(client, prompts_root):
    before, turns = snapshot(prompts_root), _turn_count(client)
    events = len(audit(client, "prompt_version_created")) + len(audit(client, "prompt_label_moved"))
    v1 = client.get(f"{SA}/versions/1", headers=as_("bob")).json()
    draft = {"question": "Say hello.", "body": v1["body"] + "\nBe brief.\n",
             "config": {**v1["config"], "max_tokens": 12, "signoff": "-- Northwind Sales Desk"}}
    r = client.post(f"{SA}/try", headers=as_("bob"), json=draft)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["draft"] is True and out["prompt_version"] is None
    assert out["answer"].rstrip().endswith("-- Northwind Sales Desk")
    assert out["model"] and out["usage"]["completion_tokens"] > 0 and out["usage"]["cost_usd"] >= 0
    assert isinstance(out["citations"], list)
    r = client.post(f"{SA}/try", headers=as_("bob"), json={"question": "Say hello.", "version": 1})
    assert r.status_code == 200 and r.json()["prompt_version"] == 1
    assert not r.json()["answer"].rstrip().endswith("-- Northwind Sales Desk")
    assert snapshot(prompts_root) == before, "try never writes a prompt file or label"
    with client.app.state.services.db.session() as s:  # paid for: in /usage and the budget, like any call
        rows = list(s.exec(select(ChatTurn).order_by(ChatTurn.id)))[turns:]
    assert [(t.channel, t.subject, t.prompt_version) for t in rows] == [("studio", "bob", None), ("studio", "bob", 1)]
    assert rows[0].completion_tokens == out["usage"]["completion_tokens"]
    assert len(audit(client, "prompt_version_created")) + len(audit(client, "prompt_label_moved")) == events


def test_a_tier_that_is_not_live_is_named_in_try_and_preview(client):
    """The sales policy allows smart, which is not live here: the local model answers, and the editor is told
    (the chat would answer the same way), instead of reading a local answer as smart's."""
    detail = client.get(SA, headers=as_("bob")).json()
    assert "smart" in detail["tiers"] and detail["live_tiers"] == ["local"]
    v1 = client.get(f"{SA}/versions/1", headers=as_("bob")).json()
    config = {**v1["config"], "tier": "smart", "max_tokens": 8}
    r = client.post(f"{SA}/try", headers=as_("bob"), json={"question": "Say hello.", "body": v1["body"],
                                                          "config": config})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["tier"] == "local" and out["model"]
    assert out["warnings"][0] == f"smart is not available now: answered by local ({out['model']})"
    assert out["finish_reason"] in ("stop", "length")  # what the playground marks as cut
    r = client.post(f"{SA}/preview", headers=as_("bob"), json={"body": v1["body"], "config": config,
                                                              "base_version": 1})
    assert "smart is not available now: until it is, answers come from local" in r.json()["warnings"]
    # A live tier: no note.
    r = client.post(f"{SA}/preview", headers=as_("bob"), json={"body": v1["body"], "config": v1["config"],
                                                              "base_version": 1})
    assert not any("not available" in w for w in r.json()["warnings"])


def test_a_conflict_names_the_api_key_creator(client):
    """A save made with one's own API key is one's own: the studio says "you saved…", not "someone else"."""
    r = client.post("/api/t/sales/keys", headers=as_("carol"), json={"scopes": ["prompts:write"]})
    assert r.status_code == 201, r.text
    carols_key = {"Authorization": f"Bearer {r.json()['token']}"}
    v1 = client.get(f"{SA}/versions/1", headers=carols_key).json()
    assert client.post(f"{SA}/versions", headers=carols_key, json={
        "body": v1["body"] + "\nby key\n", "config": v1["config"], "message": "by key",
        "base_version": 1}).status_code == 201
    r = new_version(client, "carol")
    assert r.status_code == 409
    latest = r.json()["latest"]
    assert latest["author"].startswith("key:") and latest["author_for"] == "carol"


def test_try_refuses_invalid_drafts_and_empty_requests(client):
    r = client.post(f"{SA}/try", headers=as_("bob"), json={"question": "x", "body": "{{oops}}", "config": {}})
    assert r.status_code == 422 and r.json()["error"] == "invalid_prompt"
    r = client.post(f"{SA}/try", headers=as_("bob"), json={"question": "x"})
    assert r.status_code == 422


# -- the studio page -------------------------------------------------------------------------------------


def test_studio_page_access(client):
    r = client.get("/studio")
    assert r.status_code == 401 and 'id="login-form"' in r.text and "/chat/login" in r.text
    r = client.get("/studio", headers=as_("alice"))
    assert r.status_code == 403 and "prompt editors" in r.text
    assert any(e.subject == "alice" and e.route == "/studio" for e in audit(client, "denied"))
    assert client.get("/studio", headers=as_("maria")).status_code == 403
    r = client.get("/studio", headers=as_("nobody"))  # in no department: not told "your account can use the chat"
    assert r.status_code == 403 and "not a member of any department" in r.text and "can use the chat" not in r.text
    r = client.get("/studio", headers=as_("root"))  # an operator is sent to the operations page
    assert r.status_code == 403 and "platform operator" in r.text and 'href="/admin"' in r.text
    assert "editors group" not in r.text
    r = client.get("/studio", headers=as_("bob"))
    assert r.status_code == 200 and '"tenant": "sales"' in r.text and "Bob" in r.text
    r = client.get("/studio?tenant=finance", headers=as_("bob"))
    assert r.status_code == 403 and "not a member" in r.text
    assert client.get("/studio?tenant=finance", headers=as_("fiona")).status_code == 200


def test_studio_static_files(client):
    r = client.get("/studio/static/studio.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert client.get("/studio/static/studio.css").headers["content-type"].startswith("text/css")
    for bad in ("..%2Fstudio.html", "../templates/studio.html", "nope.js", "studio.py"):
        assert client.get(f"/studio/static/{bad}").status_code == 404


def test_a_pinned_model_is_refused_with_the_allowed_tiers(client):
    r = new_version(client, "bob", model="openai/gpt-4.1")
    assert r.status_code == 422
    problem = next(p for p in r.json()["problems"] if p["field"] == "model")
    assert "choose a model tier" in problem["message"] and "local, fast, smart" in problem["message"]


def test_an_assistant_without_files_starts_at_version_one(client, prompts_root):
    shutil.rmtree(prompts_root / "sales" / "deal-desk")
    dd = f"{BASE}/deal-desk"
    detail = client.get(dd, headers=as_("bob")).json()
    assert (detail["versions"], detail["latest"], detail["labels"]) == ([], 0, {})
    body = "You are the Deal Desk of {{tenant_name}}.\n\nContext:\n{{context}}\n"
    config = {"description": "Deal desk", "tier": "local", "variables": ["tenant_name", "context"]}
    r = client.post(f"{dd}/versions", headers=as_("bob"),
                    json={"body": body, "config": config, "message": "First version", "base_version": 0})
    assert r.status_code == 201 and r.json()["version"] == 1
    assert (prompts_root / "sales" / "deal-desk" / "v0001.md").is_file()
    again = client.post(f"{dd}/versions", headers=as_("carol"),
                        json={"body": body, "config": config, "message": "Also first", "base_version": 0})
    assert again.status_code == 409 and again.json()["latest_version"] == 1


def test_an_editor_of_several_tenants_picks_among_their_own(client):
    from tests.conftest import session_token

    claims = {"sub": "gina", "preferred_username": "gina", "name": "Gina Multi",
              "groups": ["sales", "sales-editors", "finance", "finance-editors"]}
    token = session_token("gina", claims, provider="password")
    headers = {"Cookie": f"access_token={token}"}
    r = client.get("/studio", headers=headers)
    assert r.status_code == 200 and 'id="tenant-picker"' in r.text
    picker = r.text[r.text.index('id="tenant-picker"'):].split("</select>")[0]
    options = re.findall(r'<option value="([a-z-]+)"', picker)
    assert options == ["finance", "sales"], "only the tenants where gina edits prompts"
    assert client.get("/studio?tenant=sales", headers=headers).status_code == 200
    assert client.get("/studio?tenant=engineering", headers=headers).status_code == 403
