"""Every success the API answers has its body described in the OpenAPI document (ReDoc showed `{}` for twelve of
them: chat, completions, search, the document routes, knowledge bases, readiness, both Dify routes), and the
described bodies are what the routes really answer: each real answer below validates against its documented
schema, and has no field the schema does not name."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from backend.auth.api_keys import SCOPES, issue_key
from tests.api.test_dify_chat import APP_KEYS, FakeDify
from tests.conftest import REPO, session_cookie_for
from tests.llm.fakes import make_config_dir, mock, set_tenant

T = "/api/t/{tenant}"
CORPUS = REPO / "demo" / "corpus"


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _undocumented(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "") -> list[str]:
    """Fields of `value` that its schema does not name (where the schema does not allow others)."""
    schema = _resolve(schema, doc)
    for option in schema.get("anyOf", []):
        option = _resolve(option, doc)
        if (isinstance(value, dict) and option.get("type") == "object") or \
                (isinstance(value, list) and option.get("type") == "array"):
            schema = option
            break
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        if "additionalProperties" not in schema:
            found += [f"{where}.{key}" for key in value if key not in props]
        for key, item in value.items():
            if key in props:
                found += _undocumented(item, props[key], doc, f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += _undocumented(item, schema["items"], doc, f"{where}[{i}]")
    return found


def _holds(doc: dict[str, Any], method: str, path: str, response: Any) -> dict[str, Any]:
    """The answer, checked against what the document says `method path` answers with its status."""
    assert response.status_code < 300, response.text
    body = response.json()
    documented = doc["paths"][path][method]["responses"][str(response.status_code)]
    schema = documented["content"]["application/json"]["schema"]
    assert _resolve(schema, doc).get("properties"), (method, path, "no body documented")
    Draft202012Validator({"allOf": [schema], "components": doc["components"]}).validate(body)
    assert _undocumented(body, schema, doc) == [], (method, path)
    return body


def test_every_api_operation_documents_its_success_body(api_client):
    doc = api_client.get("/openapi.json").json()
    missing = []
    for path, operations in doc["paths"].items():
        if not path.startswith("/api/") and path not in ("/healthz", "/readyz"):
            continue
        for method, operation in operations.items():
            successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
            assert successes, (method, path)
            for status, response in successes.items():
                content = response.get("content") or {"(none)": {}}
                missing += [f"{method.upper()} {path} {status} {media}" for media, body in content.items()
                            if not body.get("schema")]
    assert missing == []


@pytest.fixture
def client(make_api_client, prompts_root, tmp_path, monkeypatch):
    """Models answered by LiteLLM's mock responses, Dify a local server speaking its protocol."""
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "schemas-tests-" + "s" * 40)
    for name, value in APP_KEYS.items():
        monkeypatch.setenv(name, value)
    cfg = make_config_dir(tmp_path, model_list=[mock("fast", "anthropic/claude-haiku-5-5", "A fast answer."),
                                                mock("smart", "anthropic/claude-sonnet-5-5", "A smart answer.")])
    set_tenant(cfg, "sales", policy={"allowed_tiers": ["fast", "smart"]})
    dify = FakeDify()
    yield make_api_client(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_PROMPTS_DIR=str(prompts_root), DIFY_BASE_URL=dify.url)
    dify.close()


def test_the_documented_bodies_are_what_the_routes_answer(client):
    doc = client.get("/openapi.json").json()
    carol = {"cookies": session_cookie_for("carol")}
    key = issue_key(db=client.app.state.services.db, tenant="sales", scopes=sorted(SCOPES)).token
    auth = {"headers": {"Authorization": f"Bearer {key}", "X-Tenant-ID": "sales"}}

    files = [("files", (name, (CORPUS / "sales" / name).read_bytes(), "text/markdown"))
             for name in ("pricing-rules.md", "sales-playbook.md")]
    uploaded = _holds(doc, "post", f"{T}/documents", client.post(
        "/api/t/sales/documents", files=[*files, ("files", ("empty.md", b"", "text/markdown"))], **carol))
    assert len(uploaded["documents"]) == 2 and len(uploaded["errors"]) == 1  # both lists hold items
    ids = [d["id"] for d in uploaded["documents"]]
    deadline = time.monotonic() + 180
    while {d["status"] for d in _holds(doc, "get", f"{T}/documents",
                                       client.get("/api/t/sales/documents", **carol))["documents"]} != {"ready"}:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    _holds(doc, "get", f"{T}/documents/{{document_id}}", client.get(f"/api/t/sales/documents/{ids[0]}", **carol))
    _holds(doc, "get", f"{T}/knowledge-bases", client.get("/api/t/sales/knowledge-bases", **carol))

    found = _holds(doc, "post", f"{T}/search", client.post(
        "/api/t/sales/search", json={"query": "Who must approve a discount of more than 20%?"}, **auth))
    assert found["results"]
    records = _holds(doc, "post", f"{T}/dify/retrieval", client.post(
        "/api/t/sales/dify/retrieval", **auth, json={"knowledge_id": "sales/default", "query": "discount approval",
                                                     "retrieval_setting": {"top_k": 3, "score_threshold": 0}}))
    assert records["records"]

    answer = _holds(doc, "post", f"{T}/chat", client.post("/api/t/sales/chat", **auth, json={
        "assistant": "sales-assistant", "message": "Who must approve a discount of more than 20%?"}))
    assert answer["citations"]
    for model in ("sales-assistant", "fast"):
        completion = _holds(doc, "post", f"{T}/v1/chat/completions", client.post(
            "/api/t/sales/v1/chat/completions", **auth,
            json={"model": model, "messages": [{"role": "user", "content": "Who approves discounts over 20%?"}]}))
        assert completion["choices"][0]["message"]["content"]
    _holds(doc, "post", f"{T}/dify/chat-messages", client.post("/api/t/sales/dify/chat-messages", **auth,
                                                                json={"query": "hello"}))

    _holds(doc, "get", "/readyz", client.get("/readyz"))
    ready = _holds(doc, "get", "/readyz", client.get("/readyz", cookies=session_cookie_for("root")))
    assert ready["parts"] and ready["models"]  # a platform admin's answer, with every part named
    _holds(doc, "delete", f"{T}/documents/{{document_id}}",
           client.delete(f"/api/t/sales/documents/{ids[1]}", **carol))
