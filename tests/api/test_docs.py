"""/docs and the OpenAPI document: offline assets, authentication, the tenant header and real error bodies."""

from __future__ import annotations

import re


def test_docs_pages_use_only_the_apps_own_assets(api_client):
    for page in ("/docs", "/redoc"):
        r = api_client.get(page)
        assert r.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", r.text)
        assets = [u for pair in urls for u in pair if u]
        assert assets and all(u.startswith(("/docs-static/", "/openapi.json")) for u in assets), assets
        assert "cdn.jsdelivr" not in r.text and "fonts.googleapis" not in r.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        assert api_client.get(f"/docs-static/{asset}").status_code == 200


def test_openapi_names_authentication_the_tenant_header_and_error_bodies(api_client):
    schema = api_client.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "session"}
    chat = schema["paths"]["/api/t/{tenant}/chat"]["post"]
    assert chat["security"] == [{"bearer": []}, {"session": []}]
    assert any(p["name"] == "X-Tenant-ID" and p["in"] == "header" for p in chat["parameters"])
    error = {"$ref": "#/components/schemas/Error"}
    for status in ("401", "403", "404", "422", "429"):
        assert chat["responses"][status]["content"]["application/json"]["schema"] == error
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"error", "detail"}
    completions = schema["paths"]["/api/t/{tenant}/v1/chat/completions"]["post"]
    assert completions["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"}
    dify = schema["paths"]["/api/t/{tenant}/dify/retrieval"]["post"]["requestBody"]["content"]["application/json"]
    body = schema["components"]["schemas"][dify["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(body["required"]) == {"knowledge_id", "query", "retrieval_setting"}
    assert "security" not in schema["paths"]["/healthz"]["get"]
    # What the schema promises is what a caller gets: a 401 in the Error shape.
    r = api_client.post("/api/t/sales/chat", json={"assistant": "sales-assistant", "message": "hi"})
    assert r.status_code == 401 and set(r.json()) >= {"error", "detail"}
