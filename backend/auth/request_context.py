"""The caller's address (and request line) for code that never sees the request (Chainlit's login and OAuth
hooks, its data layer), so their audit events carry an IP like every other one. Pure ASGI: no response
buffering, no SSE impact."""

from __future__ import annotations

import contextvars

from starlette.types import ASGIApp, Receive, Scope, Send

client_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("atrium_client_ip", default=None)
# (method, path) of the HTTP request being served: Chainlit asks its data layer "who owns this thread?" before a
# rename or a delete without saying which, and a refusal should record what was attempted.
request_line: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("atrium_request_line",
                                                                                       default=None)
# The HTTP request's ASGI scope, which routing fills in (the matched route) after this middleware has run.
request_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("atrium_request_scope", default=None)


class ClientIpContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")  # uvicorn has already applied trusted X-Forwarded-For
        token = client_ip.set(client[0] if client else None)
        http = scope["type"] == "http"
        line = request_line.set((scope.get("method", "GET"), scope.get("path", "")) if http else None)
        current = request_scope.set(scope if http else None)
        try:
            await self.app(scope, receive, send)
        finally:
            request_scope.reset(current)
            request_line.reset(line)
            client_ip.reset(token)


def matched_route(path: str) -> str | None:
    """The method and pattern of the route serving the current request (`GET /api/t/{tenant}/documents/{document_id}`)
    when `path` is that request's path, else None."""
    scope = request_scope.get()
    if scope is None or scope.get("path") != path:
        return None
    pattern = getattr(scope.get("route"), "path", None)
    if not isinstance(pattern, str):
        return None
    return f"{scope.get('method', 'GET')} {scope.get('root_path', '')}{pattern}"
