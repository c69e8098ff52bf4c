"""/docs and /redoc served from the app's own files (no CDN: they work offline), and an OpenAPI document that
says what the routes really do: how to authenticate, the X-Tenant-ID header, and the error bodies callers get.

The schema is post-processed once (FastAPI caches `app.openapi()`), so none of this costs a request anything:
authentication stays in `deps.require`, which reads the headers itself.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_PATH = "/docs-static"
TENANT_PREFIX = "/api/t/{tenant}"
OPENAI_PREFIX = "/api/t/{tenant}/v1/"

_ERROR = {"type": "object", "required": ["error", "detail"], "properties": {
    "error": {"type": "string", "description": "a stable code, e.g. tenant_mismatch, quota_exceeded"},
    "detail": {"type": "string", "description": "what went wrong and what to do about it"}},
    "additionalProperties": True}
_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                     "param": {"type": "string", "nullable": True}, "code": {"type": "string"}}}}}
_STATUS = {
    "401": "not signed in, or the API key / JWT is missing, malformed, expired or revoked",
    "403": "signed in, but not for this tenant (URL, X-Tenant-ID and credentials must agree) or without the role",
    "404": "no such resource in this tenant",
    "422": "the request is invalid; `detail` names each problem",
    "429": "a quota or rate limit; `Retry-After` says when to try again (absent when waiting will not help)",
}
_TENANT_HEADER = {
    "name": "X-Tenant-ID", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "the tenant of the URL; required with an IdP JWT (it must match the URL and the token), "
                   "optional with an API key or a browser session (checked when sent)",
}


def _static_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


REDOC_JS = f"{STATIC_PATH}/redoc.offline.js"
# ReDoc's sidebar footer ("API docs by Redocly") loads this logo from Redocly's CDN: a request to a third party on
# every visit, and a console error offline. The bundle is served with a local image in its place.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_js() -> bytes:
    return (_static_dir() / "redoc.standalone.js").read_bytes().replace(_REDOC_LOGO,
                                                                         f"{STATIC_PATH}/favicon.png".encode())


def install_docs(app: FastAPI) -> None:
    """Call with FastAPI(docs_url=None, redoc_url=None)."""
    redoc_js = _redoc_js()

    @app.get(REDOC_JS, include_in_schema=False)
    def redoc_bundle() -> Response:  # before the static mount, which would answer for every path under it
        return Response(redoc_js, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    app.mount(STATIC_PATH, StaticFiles(directory=_static_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                                   swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC_PATH}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                              redoc_js_url=REDOC_JS,
                              redoc_favicon_url=f"{STATIC_PATH}/favicon.png", with_google_fonts=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description="Every tenant route is `/api/t/{tenant}/...`. Authenticate with a "
                                             "tenant API key (`Authorization: Bearer atr_...`), an IdP JWT plus "
                                             "`X-Tenant-ID`, or the browser session of /chat.")
            app.openapi_schema = describe(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """Security schemes, the tenant header and the real error bodies, added to FastAPI's schema."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update({
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "a tenant API key (atr_...) or a JWT from the company's identity provider"},
        "session": {"type": "apiKey", "in": "cookie", "name": "access_token",
                    "description": "the browser session of /chat (sign in there first)"},
    })
    schemas = components.setdefault("schemas", {})
    schemas["Error"], schemas["OpenAIError"] = _ERROR, _OPENAI_ERROR
    for path, operations in schema.get("paths", {}).items():
        public = path in ("/healthz", "/readyz")
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if not public:
                operation["security"] = [{"bearer": []}, {"session": []}]
            if path.startswith(TENANT_PREFIX):
                params = operation.setdefault("parameters", [])
                if not any(p.get("name") == "X-Tenant-ID" for p in params):
                    params.append(_TENANT_HEADER)
            if public:
                continue
            ref = "#/components/schemas/" + ("OpenAIError" if path.startswith(OPENAI_PREFIX) else "Error")
            responses = operation.setdefault("responses", {})
            statuses = dict(_STATUS)
            if path.startswith(OPENAI_PREFIX):
                statuses["400"] = "the request is invalid or unsupported (`param` names the field)"
            for status, text in sorted(statuses.items()):
                responses[status] = {"description": text, "content": {"application/json": {"schema": {"$ref": ref}}}}
    _dify_retrieval_body(schema)
    return schema


def _dify_retrieval_body(schema: dict[str, Any]) -> None:
    """The route parses its body itself (Dify expects its own error codes), so FastAPI cannot describe it."""
    from backend.api.dify_retrieval import RetrievalIn

    body = RetrievalIn.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["components"]["schemas"].update(body.pop("$defs", {}))
    schema["components"]["schemas"]["DifyRetrievalRequest"] = body
    operation = schema.get("paths", {}).get(f"{TENANT_PREFIX}/dify/retrieval", {}).get("post")
    if operation is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/DifyRetrievalRequest"}}}}
