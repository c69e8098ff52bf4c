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

from backend.api.docs_statuses import PUBLIC_PATHS, TENANT_PREFIX, apply_statuses, without_nulls
from backend.api.params import NOT_BLANK

STATIC_PATH = "/docs-static"

_ERROR = {"type": "object", "required": ["error", "detail"], "properties": {
    "error": {"type": "string", "description": "a stable code, e.g. tenant_mismatch, quota_exceeded"},
    "detail": {"type": "string", "description": "what went wrong and what to do about it"}},
    "additionalProperties": True}
# The Dify External Knowledge API's refusals: Dify reads error_code/error_msg; Atrium's own fields ride along.
_DIFY_ERROR = {"type": "object", "required": ["error", "detail"], "properties": {
    **_ERROR["properties"], "error_code": {"type": "integer", "description": "Dify's code: 1001 malformed "
                                          "Authorization header, 1002 authorization failed, 2001 unknown knowledge"},
    "error_msg": {"type": "string"}}, "additionalProperties": True}
_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                     "param": {"type": ["string", "null"]}, "code": {"type": "string"}}}}}
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
            app.openapi_schema = describe(schema, app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe(schema: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Security schemes, the tenant header and every error status each route can answer (docs_statuses.py),
    added to FastAPI's schema."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update({
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "a tenant API key (atr_...) or a JWT from the company's identity provider"},
        "session": {"type": "apiKey", "in": "cookie", "name": "access_token",
                    "description": "the browser session of /chat (sign in there first)"},
    })
    schemas = components.setdefault("schemas", {})
    schemas["Error"], schemas["OpenAIError"], schemas["DifyError"] = _ERROR, _OPENAI_ERROR, _DIFY_ERROR
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or path in PUBLIC_PATHS:
                continue
            operation["security"] = [{"bearer": []}, {"session": []}]
            if path.startswith(TENANT_PREFIX):
                params = operation.setdefault("parameters", [])
                if not any(p.get("name") == "X-Tenant-ID" for p in params):
                    params.append(_TENANT_HEADER)
    _dify_retrieval_body(schema)
    apply_statuses(schema, routes)
    without_nulls(schema)
    _rules_of_routes(schema)  # on the parameters and fields as a client sends them (no null alternative)
    return schema


def _rules_of_routes(schema: dict[str, Any]) -> None:
    """What the server refuses, said where a client reads first (the routes' own modules belong to others; the
    descriptions are stated here, once the schema is built)."""
    from backend.governance.usage import MAX_RANGE_DAYS

    paths = schema.get("paths", {})
    for param in paths.get(f"{TENANT_PREFIX}/usage", {}).get("get", {}).get("parameters", []):
        if param.get("name") == "from":
            text = (f"first day, YYYY-MM-DD (UTC); at most {MAX_RANGE_DAYS} days before `to`, which defaults to "
                    "today (else a 422 `invalid_range`)")
            param["description"] = param["schema"]["description"] = text
    form = paths.get(f"{TENANT_PREFIX}/documents", {}).get("post", {}).get("requestBody", {}).get(
        "content", {}).get("multipart/form-data", {}).get("schema", {})
    ref = form.get("$ref", "")
    body = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {}) if ref else form
    props = body.get("properties", {})
    for name, prop in props.items():  # an empty file is a 422 `empty_file`
        target = prop.get("items", prop) if name == "files" else prop if name == "file" else None
        if isinstance(target, dict):
            target["minLength"] = 1
            prop["description"] = (f"{prop.get('description', 'a file')}; an empty one (or one of only whitespace) "
                                   "is a 422 `empty_file`")


def _dify_retrieval_body(schema: dict[str, Any]) -> None:
    """The route parses its body itself (Dify expects its own error codes), so FastAPI cannot describe it."""
    from backend.api.dify_retrieval import RetrievalIn

    body = RetrievalIn.model_json_schema(ref_template="#/components/schemas/{model}")
    body["properties"]["metadata_condition"] = _metadata_condition()
    body["properties"]["query"]["pattern"] = NOT_BLANK  # a blank query is refused (`empty_query`)
    schema["components"]["schemas"].update(body.pop("$defs", {}))
    schema["components"]["schemas"]["DifyRetrievalRequest"] = body
    operation = schema.get("paths", {}).get(f"{TENANT_PREFIX}/dify/retrieval", {}).get("post")
    if operation is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/DifyRetrievalRequest"}}}}


def _metadata_condition() -> dict[str, Any]:
    """Dify's metadata_condition as backend/knowledge/metadata_filter.validate takes it, no more and no less."""
    from backend.knowledge.metadata_filter import MAX_ABS_NUMBER, OPERATORS

    number = {"type": "number", "minimum": -MAX_ABS_NUMBER, "maximum": MAX_ABS_NUMBER}
    scalar = {"anyOf": [{"not": {"type": ["number", "array"]}}, number]}
    falsy = [None, "", 0, False, [], {}]
    condition = {"type": "object", "required": ["name", "comparison_operator"], "properties": {
        "name": {"description": "a metadata field, or a list of them (any may match)", "not": {"enum": falsy}},
        "comparison_operator": {"enum": list(OPERATORS)},
        "value": {"anyOf": [scalar, {"type": "array", "items": {"anyOf": [{"not": {"type": "number"}}, number]}}]},
    }}
    return {"anyOf": [{"type": "null"}, {
        "type": "object", "required": ["conditions"], "properties": {
            "logical_operator": {"description": "and (also when absent or empty) or or, in any case",
                                 "anyOf": [{"type": "string", "pattern": "^([Aa][Nn][Dd]|[Oo][Rr])?$"},
                                           {"enum": falsy}]},
            "conditions": {"type": "array", "items": condition}}}]}
