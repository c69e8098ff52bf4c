"""The app's error handlers: every refusal and failure in one body shape (`{"error", "detail"}`; OpenAI's shape on
the OpenAI-compatible routes), with words a caller can act on, and a bug's traceback only in the log."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api.limits import DIFY
from backend.api.openai_errors import is_openai_path, openai_error
from backend.errors import AtriumError

log = logging.getLogger("atrium")


def _error_body(code: str, message: str, extra: dict | None = None) -> dict[str, Any]:
    return {"error": code, "detail": message, **(extra or {})}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AtriumError)
    async def _atrium_error(request: Request, exc: AtriumError) -> JSONResponse:
        if is_openai_path(request.url.path):  # OpenAI-compatible routes answer in OpenAI's error shape
            return openai_error(exc.status_code, str(exc.extra.get("limit") or exc.code), exc.message,
                                headers=exc.headers, param=exc.extra.get("param"),
                                # a 421's tenant, deployment_group and public_url: where to send the call
                                fields=exc.extra if exc.status_code == 421 else None)
        if DIFY.match(request.url.path):  # Dify reads error_code/error_msg; Atrium's own fields ride along
            return JSONResponse({"error_code": exc.status_code, "error_msg": exc.message,
                                 **_error_body(exc.code, exc.message, exc.extra)},
                                status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(_error_body(exc.code, exc.message, exc.extra), status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_describe_problem(e) for e in exc.errors()]
        if is_openai_path(request.url.path):
            first = next(iter(exc.errors()), {})
            # A JSON syntax error's location is a character offset, not a parameter.
            loc = () if first.get("type") == "json_invalid" else first.get("loc") or ()
            param = ".".join(str(p) for p in loc if p != "body") or None
            return openai_error(422, "invalid_request", "; ".join(problems), param=param)
        return JSONResponse(_error_body("invalid_request", "; ".join(problems)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework errors (unknown route, wrong method) in the same shape as everything else.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail
        if exc.status_code == 400 and detail == "There was an error parsing the body":  # FastAPI's words
            code, detail = "invalid_request", ("the request body could not be read (malformed JSON or form data, or "
                                               "JSON nested too deeply): send one JSON object, as documented at /docs")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; the API is documented at /docs"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            detail = f"{request.method} is not allowed on {request.url.path}"
            if allowed:  # Starlette names only the first matching route's methods (GET and DELETE are two)
                detail += f"; use {', '.join(allowed)}"
                headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
                exc = StarletteHTTPException(405, detail, headers=headers)
        if is_openai_path(request.url.path):
            return openai_error(exc.status_code, code, str(detail), headers=exc.headers)
        return JSONResponse(_error_body(code, str(detail)), status_code=exc.status_code, headers=exc.headers)


    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # A body nested deeper than any decoder follows ([[[[... 200,000 levels): the caller's mistake, not ours.
        message = "the request body is nested too deeply (JSON arrays or objects inside each other)"
        if is_openai_path(request.url.path):
            return openai_error(400, "invalid_request", message)
        return JSONResponse(_error_body("invalid_request", message), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a caller's mistake: the traceback goes to the log under a reference the caller can quote;
        # the body stays JSON in the route's error shape (never Starlette's plain-text "Internal Server Error")
        # and never carries the exception's text (it may hold internals, or bytes that do not encode).
        ref = uuid.uuid4().hex[:12]
        log.error("unhandled error", exc_info=exc,
                  extra={"ref": ref, "method": request.method, "path": request.url.path})
        detail = f"internal error ({type(exc).__name__}); reference {ref} in the server log"
        if is_openai_path(request.url.path):
            return openai_error(500, "internal_error", detail)
        return JSONResponse(_error_body("internal_error", detail), status_code=500)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (routers are included without a prefix of their own)."""
    def walk(routes: list[Any]) -> Any:
        for route in routes:
            inner = getattr(route, "original_router", None)
            yield from walk(inner.routes) if inner is not None else (route,)

    methods: set[str] = set()
    for route in walk(request.app.router.routes):
        regex, verbs = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and verbs and regex.match(request.url.path):
            methods |= set(verbs)
    return sorted(methods - {"HEAD"})


def _describe_problem(error: dict) -> str:
    """One validation problem in words a caller can act on."""
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON ({reason} at character {loc[-1] if loc else '?'})"
    where = ".".join(loc) or "the request body"
    if not loc and error.get("type") in ("model_attributes_type", "dict_type"):  # text, or a JSON array
        return "the request body must be a JSON object (send Content-Type: application/json)"
    if error.get("type") == "extra_forbidden":
        return f"{where}: unknown field (this endpoint does not take it; its fields are documented at /docs)"
    if error.get("type") == "string_unicode":  # a lone UTF-16 surrogate ("\\ud800" in JSON): not text
        return (f"{where}: not valid Unicode text (a lone UTF-16 surrogate, an unpaired \\ud800-\\udfff escape); "
                "send the character as a surrogate pair or remove it")
    return f"{where}: {error.get('msg')}"
