"""The OpenAPI document says what the server does: each route's statuses and bodies, and inputs the server
refuses are refused by the schema too (the bugs the schemathesis run found, one plain test each)."""

from __future__ import annotations

import json
import re

import pytest

from backend.auth.api_keys import SCOPES, issue_key

T = "/api/t/{tenant}"


@pytest.fixture
def schema(api_client):
    return api_client.get("/openapi.json").json()


@pytest.fixture
def key(api_services):
    token = issue_key(db=api_services.db, tenant="sales", scopes=sorted(SCOPES)).token
    return {"Authorization": f"Bearer {token}", "X-Tenant-ID": "sales"}


def _op(schema, method, path):
    return schema["paths"][path][method]


def _param(schema, method, path, name):
    return next(p for p in _op(schema, method, path)["parameters"] if p["name"] == name)["schema"]


def _body(schema, method, path, media="application/json"):
    body = _op(schema, method, path)["requestBody"]["content"][media]["schema"]
    if "$ref" not in body:  # stated in the operation itself (the upload form: its route reads the body itself)
        return body
    return schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]


def test_a_body_that_is_not_json_is_a_documented_400(api_client, schema, key):
    for method, path, url in (("post", f"{T}/chat", "/api/t/sales/chat"),
                              ("post", f"{T}/search", "/api/t/sales/search"),
                              ("put", f"{T}/prompts/{{assistant}}/labels/{{label}}",
                               "/api/t/sales/prompts/sales-assistant/labels/production")):
        r = api_client.request(method, url, content=b'{"message": "\xff"}', headers={  # not UTF-8
            **key, "Content-Type": "application/json"})
        assert r.status_code == 400 and set(r.json()) >= {"error", "detail"}, r.text
        assert "400" in _op(schema, method, path)["responses"], (method, path)
    r = api_client.post("/api/t/sales/documents", content=b"--x\r\n[]--x--\r\n",
                        headers={**key, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and "400" in _op(schema, "post", f"{T}/documents")["responses"]


def test_each_route_documents_the_statuses_it_answers_and_no_others(schema):
    def statuses(method, path):
        return {s for s in _op(schema, method, path)["responses"] if not s.startswith("2")}

    assert statuses("post", f"{T}/chat") == {"400", "401", "403", "404", "413", "422", "429", "431", "502", "503"}
    # 413: the body limit is in front of every route, whatever the method; 431: the head's, in `atrium serve`
    assert statuses("get", f"{T}/usage") == {"401", "403", "413", "422", "431", "503"}  # no body, no resource
    assert statuses("post", f"{T}/prompts/{{assistant}}/versions") >= {"409", "404", "400"}
    assert statuses("post", f"{T}/documents") >= {"413", "415"}
    assert statuses("get", "/readyz") == {"413", "431", "503"} and statuses("get", "/healthz") == {"413", "431"}
    # OpenAI's API answers an invalid request with a 400, never a 422; the body is OpenAI's error shape.
    completions = _op(schema, "post", f"{T}/v1/chat/completions")["responses"]
    assert "422" not in completions and "400" in completions
    assert completions["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    param = schema["components"]["schemas"]["OpenAIError"]["properties"]["error"]["properties"]["param"]
    assert param == {"type": ["string", "null"]}  # OpenAPI 3.1: `nullable` means nothing, and param is often null
    assert "202" in _op(schema, "delete", f"{T}/documents/{{document_id}}")["responses"]
    chat_ok = _op(schema, "post", f"{T}/chat")["responses"]["200"]["content"]
    assert "text/event-stream" in chat_ok  # `stream: true`
    assert _op(schema, "post", f"{T}/dify/retrieval")["responses"]["404"]["content"]["application/json"][
        "schema"]["$ref"].endswith("/DifyError")


def test_a_tool_message_is_refused_by_the_schema_as_by_the_server(api_client, schema, key):
    message = schema["components"]["schemas"]["Message"]
    assert message["properties"]["role"]["enum"] == ["system", "developer", "user", "assistant"]
    assert set(message["required"]) == {"role", "content"}
    body = _body(schema, "post", f"{T}/v1/chat/completions")
    assert body["additionalProperties"] is False and body["properties"]["n"]["maximum"] == 1
    r = api_client.post("/api/t/sales/v1/chat/completions", headers=key, json={
        "model": "fast", "messages": [{"role": "tool", "content": "42"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"


def test_a_content_part_whose_type_is_not_text_is_a_400_not_a_500(api_client, key):
    for kind in ({}, [], 3, None):
        r = api_client.post("/api/t/sales/v1/chat/completions", headers=key, json={
            "model": "fast", "messages": [{"role": "user", "content": [{"type": kind, "text": "hi"}]}]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_content", (kind, r.text)


def test_knowledge_base_names_have_one_pattern_in_schema_and_server(api_client, schema, key):
    from backend.knowledge.service import KB_PATTERN

    assert _param(schema, "get", f"{T}/documents", "kb")["pattern"] == KB_PATTERN
    assert _body(schema, "post", f"{T}/search")["properties"]["kb"]["pattern"] == KB_PATTERN
    assert _body(schema, "post", f"{T}/documents", "multipart/form-data")["properties"]["kb"]["pattern"] == KB_PATTERN
    for name in ("Bad KB", " sales", "sales\n", "\u212aey", "-x", "x" * 64):  # \u212a lower-cases to "k"
        assert not re.fullmatch(KB_PATTERN, name)  # ECMA 262's $ is the end, as fullmatch's
        r = api_client.get("/api/t/sales/documents", params={"kb": name}, headers=key)
        assert (r.status_code, r.json()["error"]) == (422, "invalid_kb"), (name, r.text)
    r = api_client.get("/api/t/sales/documents", params={"kb": "Default"}, headers=key)
    assert r.status_code == 404 and r.json()["error"] == "kb_not_found"  # a valid name, kept lower-cased


def test_a_key_scope_must_be_one_of_the_scopes(api_client, schema, key):
    scopes = _body(schema, "post", f"{T}/keys")["properties"]["scopes"]
    assert scopes["items"]["enum"] == sorted(SCOPES) and scopes["minItems"] == 1
    for bad in ([""], ["chat", ""], [" chat"]):
        r = api_client.post("/api/t/sales/keys", headers=key, json={"scopes": bad})
        assert r.status_code == 422, (bad, r.text)


def test_a_number_is_not_a_date(api_client, schema, key):
    for path, fmt in ((f"{T}/usage", "date"), (f"{T}/audit", "date-time")):
        param = _param(schema, "get", path, "to")
        assert {"type": "string", "format": fmt} in [{k: p.get(k) for k in ("type", "format")}
                                                     for p in (param, *param.get("anyOf", []))], param
    for url, value in (("/api/t/sales/usage", "0"), ("/api/t/sales/usage", "1700000000"),
                       ("/api/t/sales/usage", "2026-01-31T00:00:00"), ("/api/t/sales/audit", "0.5"),
                       ("/api/t/sales/audit", "1700000000")):
        r = api_client.get(url, params={"to": value}, headers=key)
        assert r.status_code == 422 and "a number is not read as a date" in r.json()["detail"], (url, value, r.text)
    assert api_client.get("/api/t/sales/usage", params={"to": "2026-01-31"}, headers=key).status_code == 200
    for value in ("2026-01-31", "2026-01-31T09:00:00Z", "2026-01-31 09:00"):
        assert api_client.get("/api/t/sales/audit", params={"to": value}, headers=key).status_code == 200, value


def test_an_offset_past_the_calendars_end_bounds_the_audit_log_instead_of_failing(api_client, key):
    for query in ({"to": "9999-12-31T23:59:59-23:59"}, {"from": "0001-01-01T00:00:00+23:59"}):
        r = api_client.get("/api/t/sales/audit", params=query, headers=key)
        assert r.status_code == 200, (query, r.text)


def test_json_numbers_and_booleans_are_not_read_from_strings(api_client, key):
    for body in ({"query": "x", "min_score": False}, {"query": "x", "top_k": "5"}, {"query": "x", "top_k": True},
                 {"query": " \x1c\u3000"}):
        r = api_client.post("/api/t/sales/search", headers=key, json=body)
        assert r.status_code == 422, (body, r.text)
    r = api_client.post("/api/t/sales/search", headers=key, json={"query": "refunds", "top_k": 5.0})
    assert r.status_code == 200, r.text  # 5.0 is an integer to JSON Schema
    r = api_client.put("/api/t/sales/prompts/sales-assistant/labels/canary", headers=key,
                       json={"version": 1, "create": "yes"})
    assert r.status_code == 422 and "create" in r.json()["detail"], r.text


def test_multipart_fields_and_query_parameters_are_never_null(schema):
    form = _body(schema, "post", f"{T}/documents", "multipart/form-data")
    assert all("anyOf" not in p for p in form["properties"].values()), form
    assert _param(schema, "get", f"{T}/documents", "kb")["type"] == "string"


def test_the_status_tables_name_only_operations_that_exist(schema):
    from backend.api.docs_statuses import OTHER_SUCCESS, ROUTE_STATUSES, STREAMS

    for method, path in [*ROUTE_STATUSES, *STREAMS, *OTHER_SUCCESS]:  # a renamed route must not lose its statuses
        assert method.lower() in schema["paths"].get(path, {}), (method, path)


# -- what the red-team review found the document did not say --------------------------------------------------


def test_a_usage_range_longer_than_a_year_is_a_documented_422(api_client, schema, key):
    """`GET /usage?from=2000-01-01` is a 422 (`to` defaults to today, 366 days at most): the schema said neither."""
    r = api_client.get("/api/t/sales/usage", params={"from": "2000-01-01"}, headers=key)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_range"), r.text
    assert "366 days" in r.json()["detail"]
    operation = _op(schema, "get", f"{T}/usage")
    assert "`invalid_range`" in operation["responses"]["422"]["description"]
    assert "366 days" in operation["responses"]["422"]["description"]
    since = next(p for p in operation["parameters"] if p["name"] == "from")
    assert "at most 366 days before `to`, which defaults to today" in since["description"], since


def test_an_empty_file_is_refused_by_the_schema_as_by_the_server(api_client, schema, key):
    r = api_client.post("/api/t/sales/documents", files=[("files", ("empty.txt", b"", "text/plain"))], headers=key)
    assert (r.status_code, r.json()["error"]) == (422, "empty_file"), r.text
    form = _body(schema, "post", f"{T}/documents", "multipart/form-data")["properties"]
    assert form["files"]["items"]["minLength"] == 1 and form["file"]["minLength"] == 1, form
    assert "`empty_file`" in _op(schema, "post", f"{T}/documents")["responses"]["422"]["description"]


def test_the_head_and_body_limits_are_documented_on_every_operation(live_server):
    """`atrium serve` answers a head (or trailers) over ATRIUM_MAX_HEADER_KB with a 431 before any route, and
    backend/api/limits.py a body over its limit with a 413, on every route: both are documented on every
    operation, with the bodies the server really sends."""
    import socket

    import httpx
    import jsonschema

    schema = httpx.get(f"{live_server.url}/openapi.json", timeout=30).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"413", "431"} <= set(responses), (method, path)
            ref = responses["431"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error", (method, path, ref)  # the server's shape, on /v1 too
            assert "ATRIUM_MAX_HEADER_KB" in responses["431"]["description"]

    def answer(request: bytes) -> tuple[int, dict]:
        host, port = live_server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), json.loads(body)

    def documented(path: str, method: str, status: str) -> dict:
        ref = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]

    status, body = answer(b"GET /api/t/sales/v1/models HTTP/1.1\r\nHost: atrium\r\nX-Filler: "
                          + b"a" * (65 * 1024) + b"\r\n\r\n")
    assert status == 431
    jsonschema.validate(body, documented(f"{T}/v1/models", "get", "431"))
    status, body = answer(b"POST /api/t/sales/v1/chat/completions HTTP/1.1\r\nHost: atrium\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (300 * 1024 * 1024))
    assert status == 413 and body["error"]["code"] == "body_too_large"
    jsonschema.validate(body, documented(f"{T}/v1/chat/completions", "post", "413"))
