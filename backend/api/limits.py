"""Request bodies capped before anything reads them: no parsing, no authentication, no audit write happens for a
body over its route family's limit. Pure ASGI and outermost (app.py), so it also covers Chainlit's routes.

A declared Content-Length over the limit is answered 413 before a byte of the body is read (one within it is
all the server delivers); a body without one (chunked) is counted as it streams in and answered 413 the moment
the count passes the limit, so at most one chunk past the limit is ever held. Websocket scopes pass untouched
(their frames have their own limits).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.openai_errors import is_openai_path, openai_error_body
from backend.settings import Settings

KIB = 1024
MIB = 1024 * KIB
# A multipart request carries, besides its files, part headers and boundaries (a few hundred bytes each) and
# form fields (kb, title, metadata: Starlette takes up to 1 MiB per field).
PART_OVERHEAD = 16 * KIB
FORM_OVERHEAD = 1 * MIB
DOCUMENTS = re.compile(r"^/api/t/[^/]+/documents/?$")
CHAT_UPLOAD = "/chat/project/file"
DIFY = re.compile(r"^/api/t/[^/]+/dify/")


# Bounds of integer parameters: past them a value is a mistake or a probe (a 422 naming the bound), never a
# database overflow (a 500): SQL integers hold 2**63 - 1 at most.
MAX_ID = 2**63 - 1
MAX_OFFSET = 1_000_000
MAX_VERSION = 1_000_000


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    setting: str  # what an operator changes to raise it
    what: str


class _Refused(HTTPException):
    """Raised into the app from `receive` once the 413 is sent: it unwinds the handler that was reading the body.
    An HTTPException, so every framework layer (FastAPI's, Chainlit's) answers it quietly instead of logging a
    server error; that answer is dropped (the 413 already went out)."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


def limits_of(settings: Settings) -> dict[str, Limit]:
    upload = int(settings.max_upload_mb * MIB)
    files = settings.max_upload_files
    return {
        "documents": Limit(files * (upload + PART_OVERHEAD) + FORM_OVERHEAD,
                           "ATRIUM_MAX_UPLOAD_MB, ATRIUM_MAX_UPLOAD_FILES",
                           f"an upload of up to {files} files of {settings.max_upload_mb:g} MB each"),
        "chat_upload": Limit(upload + PART_OVERHEAD + FORM_OVERHEAD, "ATRIUM_MAX_UPLOAD_MB",
                             f"a chat upload (one file of up to {settings.max_upload_mb:g} MB)"),
        "json": Limit(settings.max_body_kb * KIB, "ATRIUM_MAX_BODY_KB", "a request body"),
    }


def _family(scope: Scope) -> str:
    path, method = scope.get("path", ""), scope.get("method", "GET")
    if method == "POST" and DOCUMENTS.match(path):
        return "documents"
    if method == "POST" and path == CHAT_UPLOAD:
        return "chat_upload"
    return "json"


def _size(n: int) -> str:
    # MB and KB as the settings name them (ATRIUM_MAX_UPLOAD_MB, ATRIUM_MAX_BODY_KB: 1 MB = 1,048,576 bytes).
    return f"{n / MIB:,.1f} MB" if n >= MIB else f"{n / KIB:,.0f} KB"


class BodyLimit:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.limits = limits_of(settings)

    def passes(self, scope: Scope) -> bool:
        """Whether an HTTP request passes here untouched: a declared length within its limit (fast_dispatch.py)."""
        declared = _content_length(scope)
        return declared is not None and declared <= self.limits[_family(scope)].max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits[_family(scope)]
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit.max_bytes:
                await _send_413(scope, send, limit, declared=declared)
                return
            # The HTTP server delivers exactly Content-Length bytes: nothing to count (the common, fast path).
            await self.app(scope, receive, send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    refused = True
                    await _send_413(scope, send, limit, declared=None)
                    raise _Refused()
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after the 413, whatever the app still answers has nowhere to go
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # the HTTP server refuses these before us; nothing to measure here
                return None
    return None


async def _send_413(scope: Scope, send: Send, limit: Limit, *, declared: int | None) -> None:
    size = f" ({_size(declared)} declared)" if declared is not None else ""
    detail = (f"the request body is larger than {_size(limit.max_bytes)}{size}, the limit for {limit.what}; "
              f"send less, or ask the operator to raise {limit.setting}")
    path = scope.get("path", "")
    body: dict
    if is_openai_path(path):
        body = openai_error_body(413, "body_too_large", detail)
    elif DIFY.match(path):  # Dify reads error_code/error_msg
        body = {"error_code": 413, "error_msg": detail, "error": "body_too_large", "detail": detail}
    else:
        body = {"error": "body_too_large", "detail": detail, "limit_bytes": limit.max_bytes,
                "setting": limit.setting}
    data = json.dumps(body).encode()
    # `connection: close`: the rest of the body is never read, so the connection cannot carry another request.
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
