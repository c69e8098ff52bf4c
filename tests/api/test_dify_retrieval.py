"""Dify's External Knowledge API, exactly: request/response shapes, score threshold, top_k,
metadata_condition operators, and the error codes 1001 / 1002 / 2001 (each refusal audited)."""

from __future__ import annotations

import json

import pytest

from backend.auth.api_keys import issue_key
from backend.db.repositories.audit import list_events
from tests.api.test_documents import CORPUS, wait_ready

URL = "/api/t/sales/dify/retrieval"


@pytest.fixture
def dify(api_client, login_as):
    carol = {"cookies": login_as("carol")}
    ids = []
    for name, meta in (("pricing-rules.md", {"category": "pricing", "year": 2026, "owner": "Deal Desk"}),
                       ("sales-playbook.md", {"category": "playbook", "year": 2025})):
        r = api_client.post("/api/t/sales/documents", files=[("files", (name, (CORPUS / "sales" / name).read_bytes(),
                                                                         "text/markdown"))],
                            data={"metadata": json.dumps(meta)}, **carol)
        assert r.status_code == 202, r.text
        ids.append(r.json()["documents"][0]["id"])
    wait_ready(api_client, "sales", ids, **carol)
    token = api_client.post("/api/t/sales/keys", json={"name": "dify", "scopes": ["retrieval"]}, **carol).json()
    return {"Authorization": f"Bearer {token['token']}"}, ids


def _ask(client, headers, query="Who must approve a discount of more than 20%?", top_k=3, threshold=0.0,
         knowledge_id="sales/default", **extra):
    body = {"knowledge_id": knowledge_id, "query": query,
            "retrieval_setting": {"top_k": top_k, "score_threshold": threshold}, **extra}
    return client.post(URL, json=body, headers=headers)


def test_records_in_difys_shape(api_client, dify):
    headers, ids = dify
    r = _ask(api_client, headers)
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    assert len(records) == 3
    for rec in records:
        assert set(rec) == {"content", "score", "title", "metadata"}
        assert isinstance(rec["metadata"], dict) and 0.0 <= rec["score"] <= 1.0
    assert records[0]["title"] == "Northwind Cloud Pricing Rules"
    assert records[0]["metadata"]["document_id"] == ids[0] and records[0]["metadata"]["category"] == "pricing"
    assert records[0]["metadata"]["path"] == "pricing-rules.md"
    assert any("Project BLUEHERON-7" in rec["content"] for rec in records)
    # the bare kb name works too; a threshold drops weak passages; top_k caps the count
    assert len(_ask(api_client, headers, knowledge_id="default", top_k=1).json()["records"]) == 1
    strict = _ask(api_client, headers, threshold=0.55).json()["records"]
    assert all(rec["score"] >= 0.55 for rec in strict) and len(strict) < 3
    assert _ask(api_client, headers, threshold=0.99).json() == {"records": []}


CONDITIONS = [
    ({"conditions": [{"name": ["category"], "comparison_operator": "is", "value": "playbook"}]}, {1}),
    ({"conditions": [{"name": "category", "comparison_operator": "is not", "value": "playbook"}]}, {0}),
    ({"conditions": [{"name": ["owner"], "comparison_operator": "contains", "value": "desk"}]}, {0}),
    ({"conditions": [{"name": ["category"], "comparison_operator": "in", "value": ["playbook", "x"]}]}, {1}),
    ({"conditions": [{"name": ["category"], "comparison_operator": "not in", "value": ["playbook"]}]}, {0}),
    ({"conditions": [{"name": ["year"], "comparison_operator": ">", "value": 2025}]}, {0}),
    ({"conditions": [{"name": ["owner"], "comparison_operator": "empty"}]}, {1}),
    ({"logical_operator": "or", "conditions": [
        {"name": ["category"], "comparison_operator": "is", "value": "playbook"},
        {"name": ["year"], "comparison_operator": "=", "value": 2026}]}, {0, 1}),
    ({"logical_operator": "and", "conditions": [
        {"name": ["category"], "comparison_operator": "is", "value": "playbook"},
        {"name": ["year"], "comparison_operator": "=", "value": 2026}]}, set()),
]


def test_metadata_condition(api_client, dify):
    headers, ids = dify
    for condition, expected in CONDITIONS:
        r = _ask(api_client, headers, query="discount approval and pipeline stages", top_k=10,
                 metadata_condition=condition)
        assert r.status_code == 200, r.text
        found = {rec["metadata"]["document_id"] for rec in r.json()["records"]}
        assert found == {ids[i] for i in expected}, condition


@pytest.mark.parametrize("number", ["1e20", "-1e20", "NaN", "Infinity", "-Infinity", "1e400"])
def test_numbers_no_filter_can_use_are_a_400_in_difys_shape(api_client, dify, number):
    """Finding 7: 1e20, NaN or Infinity in a condition reached datetime and float code and came back as a 500.
    Now a 400 in Dify's shape naming the value, whichever operator carries it, and nothing is searched."""
    headers, _ = dify
    for op, field in (("before", "created_at"), ("after", "year"), (">", "year"), ("=", "year")):
        raw = ('{"knowledge_id": "sales/default", "query": "discount approval", '
               '"retrieval_setting": {"top_k": 3, "score_threshold": 0}, "metadata_condition": {"conditions": '
               f'[{{"name": ["{field}"], "comparison_operator": "{op}", "value": {number}}}]}}}}')
        r = api_client.post(URL, content=raw, headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 400, (op, number, r.text)
        body = r.json()
        assert body["error_code"] == 400 and "metadata_condition" in body["error_msg"], body
        assert "not a usable number" in body["error_msg"] and "9,007,199,254,740,992" in body["error_msg"]
    # a list carrying one is refused too; a number written as a string is text, compared as text (no error)
    r = api_client.post(URL, headers={**headers, "Content-Type": "application/json"}, content=(
        '{"knowledge_id": "sales/default", "query": "q", "retrieval_setting": {"top_k": 3}, "metadata_condition": '
        f'{{"conditions": [{{"name": "year", "comparison_operator": "in", "value": [2026, {number}]}}]}}}}'))
    assert (r.status_code, r.json()["error_code"]) == (400, 400), r.text
    assert _ask(api_client, headers, metadata_condition={"conditions": [
        {"name": ["created_at"], "comparison_operator": "before", "value": "1e20"}]}).status_code == 200


def _denials(client) -> list:
    with client.app.state.services.db.session() as session:
        return list_events(session=session, kind="denied", limit=50)


def test_error_codes(api_client, dify, login_as):
    headers, _ = dify
    cases = [({}, 401, 1001), ({"Authorization": "Basic abc"}, 401, 1001),
             ({"Authorization": "Bearer"}, 401, 1001), ({"Authorization": "Bearer atr_nope_nope"}, 401, 1002)]
    for hdrs, status, code in cases:
        r = _ask(api_client, hdrs)
        assert (r.status_code, r.json()["error_code"]) == (status, code), (hdrs, r.text)
        assert r.json()["error_msg"]
    carol = login_as("carol")
    chat_only = api_client.post("/api/t/sales/keys", json={"name": "c", "scopes": ["chat"]}, cookies=carol).json()
    r = _ask(api_client, {"Authorization": f"Bearer {chat_only['token']}"})
    assert (r.status_code, r.json()["error_code"]) == (403, 1002)
    api_client.delete(f"/api/t/sales/keys/{chat_only['id']}", cookies=carol)
    r = _ask(api_client, {"Authorization": f"Bearer {chat_only['token']}"})
    assert (r.status_code, r.json()["error_code"]) == (401, 1002)
    r = _ask(api_client, headers, knowledge_id="sales/nonexistent")
    assert (r.status_code, r.json()["error_code"]) == (404, 2001)
    r = api_client.post(URL, json={"query": "x"}, headers=headers)
    assert r.status_code == 400 and "knowledge_id" in r.json()["error_msg"]
    r = _ask(api_client, headers, metadata_condition={"conditions": [{"name": "a", "comparison_operator": "~"}]})
    assert (r.status_code, r.json()["error_code"]) == (400, 400) and "comparison_operator" in r.json()["error_msg"]
    reasons = [d.reason for d in _denials(api_client)]
    assert {"not_authenticated", "malformed_authorization", "unknown_api_key", "missing_scope",
            "revoked_api_key", "knowledge_not_found"} <= set(reasons)


def test_another_tenants_knowledge_id_is_not_found(api_client, dify, login_as):
    headers, _ = dify
    # engineering's key, asking for the sales knowledge base through its own URL: not found, audited
    eng = issue_key(db=api_client.app.state.services.db, tenant="engineering", scopes=["retrieval"]).token
    r = _ask(api_client, {"Authorization": f"Bearer {eng}"}, knowledge_id="sales/default")
    r2 = api_client.post("/api/t/engineering/dify/retrieval", headers={"Authorization": f"Bearer {eng}"},
                         json={"knowledge_id": "sales/default", "query": "Project BLUEHERON-7",
                               "retrieval_setting": {"top_k": 5, "score_threshold": 0}})
    assert (r2.status_code, r2.json()["error_code"]) == (404, 2001)
    assert "BLUEHERON" not in r2.text
    # and on the sales URL, its key is refused outright
    assert (r.status_code, r.json()["error_code"]) == (403, 1002) and "BLUEHERON" not in r.text
    denial = _denials(api_client)[0]
    assert (denial.tenant, denial.reason, denial.status) == ("engineering", "knowledge_not_found", 404)
    assert denial.detail["knowledge_id"] == "sales/default"


@pytest.mark.parametrize("body", ["[" * 200_000, '{"knowledge_id": "sales/default", "query": "q", '
                                  '"retrieval_setting": {"top_k": 3, "score_threshold": 0.1}, "metadata_condition": '
                                  '{"logical_operator": "and", "conditions": [{"name": ["a"], '
                                  '"comparison_operator": "is", "value": ' + "[" * 990 + "]" * 990 + "}]}}"])
def test_a_body_nested_too_deeply_is_a_400_in_difys_shape(api_client, body):
    """A review found these a 500 (RecursionError) with the connection dropped."""
    from backend.auth.api_keys import issue_key

    token = issue_key(db=api_client.app.state.services.db, tenant="sales", scopes=["retrieval"]).token
    r = api_client.post(URL, content=body, headers={"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error_code"] == 400, r.text
