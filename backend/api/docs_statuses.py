"""The statuses each operation of the OpenAPI document can answer, derived from the route itself: what it depends
on (a principal, the tenant guard, a platform admin), whether it reads a body (JSON or multipart), which path
parameters name a resource, and a short table of what a route's own code can refuse beyond that (a quota, a
model provider, a version conflict). tests/api/test_schemathesis.py holds the document to it: a status the
server answers that is not listed here fails the run.

Also the parameter schemas a client can actually send: a query parameter or a multipart field cannot be JSON
`null` (absent is how it is left out), so FastAPI's `anyOf: [X, null]` for an optional one is reduced to X.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts

from backend.governance.usage import MAX_RANGE_DAYS

TENANT_PREFIX = "/api/t/{tenant}"
OPENAI_PREFIX = "/api/t/{tenant}/v1/"
PUBLIC_PATHS = ("/healthz", "/readyz")

TEXT = {
    "400": "the body cannot be read (not UTF-8 JSON, or malformed multipart), or the request is refused as it "
           "stands (on OpenAI-compatible routes every invalid request; `param` names the field)",
    "401": "not signed in, or the API key / JWT is missing, malformed, expired or revoked",
    "403": "signed in, but not for this tenant (URL, X-Tenant-ID and credentials must agree), without the role or "
           "scope, or a cross-site request with a browser session",
    "404": "no such resource in this tenant (the id, assistant, model or knowledge base the request names)",
    "409": "the request conflicts with the current state (e.g. someone saved a newer version): nothing was changed",
    "413": "the body (or one uploaded file) is larger than the limit, whatever the method; `detail` (on "
           "OpenAI-compatible routes `error.message`) names it and the setting",
    "415": "the uploaded file is of a type that is not supported",
    "422": "the request is invalid; `detail` names each problem",
    "431": "the request line and headers, or a chunked body's trailers, are larger than `atrium serve` takes "
           "(ATRIUM_MAX_HEADER_KB, 64 KiB by default): answered before any route, in this shape on every one",
    "429": "a quota or rate limit; `Retry-After` says when to try again (absent when waiting will not help)",
    "502": "an upstream service (model provider, embedding model, vector store, Dify) failed",
    "503": "a part this request needs is not available now (identity provider, model tier, Redis, Dify "
           "configuration); `detail` names it",
}
# What a route's own code refuses that its parameters' schemas cannot say (a rule across two of them, what a
# file's bytes are): added to the status's description.
ROUTE_TEXT: dict[tuple[str, str, str], str] = {
    ("GET", "/api/t/{tenant}/usage", "422"): (
        f"also `invalid_range`: `from` after `to`, or more than {MAX_RANGE_DAYS} days before it (`to` defaults "
        f"to today, so an old `from` alone is a 422)"),
    ("POST", "/api/t/{tenant}/documents", "422"): (
        "also, per file, `empty_file` (no bytes, or only whitespace), `invalid_filename`, `type_mismatch`, "
        "`corrupt_pdf`, `corrupt_docx`, `encrypted_pdf`, `zip_bomb`; and `no_files`, `too_many_files` "
        "(ATRIUM_MAX_UPLOAD_FILES), `invalid_metadata`. When some files are accepted the answer is a 202 listing "
        "the others under `errors`"),
    ("POST", "/api/t/{tenant}/evals/{assistant}/runs/{run_id}/cancel", "409"): (
        "`run_finished` (it finished) or `run_not_running` (it failed or stopped before: resume it instead)"),
}
MODEL_CALL = ("400", "404", "429", "502", "503")  # a chat turn: admission, quotas, the model and its provider
# What a route's own code can answer beyond what its dependencies and parameters imply (derived below).
ROUTE_STATUSES: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/api/t/{tenant}/chat"): MODEL_CALL,
    ("POST", "/api/t/{tenant}/v1/chat/completions"): MODEL_CALL,
    ("GET", "/api/t/{tenant}/v1/models/{model_id}"): ("503",),  # an allowed tier with no live deployment
    ("POST", "/api/t/{tenant}/prompts/{assistant}/try"): MODEL_CALL,
    ("POST", "/api/t/{tenant}/prompts/{assistant}/versions"): ("409",),
    ("POST", "/api/t/{tenant}/dify/chat-messages"): ("4XX", "502", "503"),  # 4XX: Dify's own, passed through
    ("POST", "/api/t/{tenant}/documents"): ("415",),
    ("GET", "/api/t/{tenant}/documents"): ("404",),  # ?kb= a knowledge base the tenant does not have
    ("POST", "/api/t/{tenant}/search"): ("404", "502"),
    ("POST", "/api/t/{tenant}/dify/retrieval"): ("400", "401", "403", "404", "502", "503"),
    ("GET", "/api/t/{tenant}/feedback"): ("404",),
    ("POST", "/api/t/{tenant}/evals/{assistant}/cases/import"): ("400", "415"),  # reads its body itself
    ("POST", "/api/t/{tenant}/evals/{assistant}/runs/{run_id}/resume"): ("409",),  # running elsewhere, finished
    ("POST", "/api/t/{tenant}/evals/{assistant}/runs/{run_id}/cancel"): ("409",),  # finished, or stopped before
    ("GET", "/api/admin/audit"): ("404",),
    ("POST", "/api/t/{tenant}/sessions/end"): ("404",),  # a subject who never signed in here
    ("POST", "/api/t/{tenant}/usage/allowances"): ("409",),  # the tenant gives its members no allowance
    ("POST", "/api/t/{tenant}/documents/{document_id}/reindex"): ("409",),  # the document is being read already
    ("POST", "/api/admin/sessions/end"): ("404",),
    ("GET", "/readyz"): ("503",),
}

# Routes that answer server-sent events when the body asks for a stream (`stream: true`, Dify's `streaming`).
STREAMS = frozenset({("POST", "/api/t/{tenant}/chat"), ("POST", "/api/t/{tenant}/v1/chat/completions"),
                     ("POST", "/api/t/{tenant}/dify/chat-messages")})
_SSE_EVENT = {"type": "object", "description": "each server-sent event, when the body asks for a stream: its `data` "
                                              "(JSON text) and, on some routes, its `event` name",
              "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"},
                             "retry": {"type": "integer"}}}
# Successes FastAPI cannot see (the route picks its status at run time).
OTHER_SUCCESS = {("DELETE", "/api/t/{tenant}/documents/{document_id}"): (
    "202", "accepted: a busy worker finishes the deletion (GET then answers 404)"),
    ("POST", "/api/t/{tenant}/evals/{assistant}/runs/{run_id}/cancel"): (
        "200", "the run was cancelled already: returned as it is, nothing changed")}


def _walk(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub
        yield from _walk(sub)


def _guards(route: Any) -> set[str]:
    """Which of deps.py's guards the route runs: principal (401), tenant or platform (403)."""
    from backend.api import deps

    found: set[str] = set()
    for sub in _walk(route.dependant):
        call = sub.call
        if call is deps.get_principal:
            found.add("principal")
        elif call is deps.get_tenant_context or getattr(call, "__qualname__", "").startswith("require.<locals>"):
            found |= {"principal", "tenant"}
        elif call is deps.get_platform_admin:
            found |= {"principal", "platform"}
    return found


def _has_body(route: Any) -> bool:
    return bool(route.dependant.body_params)


def route_statuses(route: Any, method: str) -> set[str]:
    """`route`: an APIRoute, or FastAPI's context of one included through a router (same attributes)."""
    path = route.path_format
    # backend/api/limits.py caps every request's body, whatever the method, before routing; backend/serving.py
    # every request's head and trailers, before the app sees the request.
    out = {"413", "431"}
    if path in PUBLIC_PATHS:
        return out | set(ROUTE_STATUSES.get((method, path), ()))
    if path.startswith("/api/"):
        out.add("422")  # every /api route refuses unknown query parameters
    guards = _guards(route)
    if guards:
        out |= {"401", "503"}  # 503: the identity provider's keys cannot be fetched to check a JWT
    if guards & {"tenant", "platform"}:
        out.add("403")
    if _has_body(route):
        out |= {"400", "422"}
    if any(p.name != "tenant" for p in route.dependant.path_params):
        out.add("404")
    out |= set(ROUTE_STATUSES.get((method, path), ()))
    if path.startswith(OPENAI_PREFIX) and "422" in out:  # OpenAI's API has no 422: its invalid request is a 400
        out = (out - {"422"}) | {"400"}
    return out


def error_ref(path: str, status: str = "") -> str:
    if status == "431":  # sent by the server before any route: it cannot take a route's shape
        return "Error"
    if path.startswith(OPENAI_PREFIX):
        return "OpenAIError"
    return "DifyError" if path == f"{TENANT_PREFIX}/dify/retrieval" else "Error"


def apply_statuses(schema: dict[str, Any], routes: Iterable[Any]) -> None:
    """Each operation's error responses, from `route_statuses`; the success responses FastAPI wrote stay."""
    paths = schema.get("paths", {})
    for route in iter_route_contexts(list(routes)):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            _successes(responses, (method, route.path_format))
            for status in sorted(route_statuses(route, method)):
                ref = {"$ref": f"#/components/schemas/{error_ref(route.path_format, status)}"}
                body = {"type": "object", "description": "Dify's own error body"} if status == "4XX" else ref
                text = "Dify refused the request (its status and body, passed through)" if status == "4XX" \
                    else TEXT[status]
                if (extra := ROUTE_TEXT.get((method, route.path_format, status))) is not None:
                    text = f"{text}; {extra}"
                responses[status] = {"description": text, "content": {"application/json": {"schema": body}}}
            if "422" not in route_statuses(route, method):
                responses.pop("422", None)  # FastAPI's HTTPValidationError, for a route that answers 400 instead


def _successes(responses: dict[str, Any], key: tuple[str, str]) -> None:
    if key in OTHER_SUCCESS:
        status, text = OTHER_SUCCESS[key]
        responses[status] = {"description": text, "content": {"application/json": {"schema": {"type": "object"}}}}
    if key in STREAMS:
        ok = next((v for k, v in responses.items() if k.startswith("2")), None)
        if ok is not None:
            ok.setdefault("content", {})["text/event-stream"] = {"schema": _SSE_EVENT}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return schema
    rest = [o for o in options if o != {"type": "null"}]
    reduced = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **reduced}
    return {**reduced, "anyOf": rest}


def without_nulls(schema: dict[str, Any]) -> None:
    """Query, path and header parameters, and multipart fields, as a client can send them (no JSON null)."""
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for param in operation.get("parameters", []):
                if isinstance(param.get("schema"), dict):
                    param["schema"] = _not_null(param["schema"])
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if form is None:
                continue
            body = form.get("schema", {})
            ref = body.get("$ref", "")
            target = components.get(ref.rsplit("/", 1)[-1]) if ref else body
            if isinstance(target, dict):
                props = target.get("properties", {})
                for name, prop in props.items():
                    props[name] = _not_null(prop)
