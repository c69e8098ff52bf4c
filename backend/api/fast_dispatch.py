"""The fast path's requests served without the generic router and the middlewares that pass them untouched.

A plain chat completion (backend/api/fast_path.py) still went through Starlette's router (the route list walk,
FastAPI's included-router contexts, `request_response` and its exit stacks: ~0.4 profiled ms per request) and five
middleware frames that each pass it on untouched. `FastDispatch` sits inside the middlewares that act on every
request (Observe, BrowserSecurity: app.py) and, for a request it knows the router sends to a route with an active
fast path, calls that fast path itself, doing what the frames it skips do for that request and nothing else:

- which route a request reaches is learned from the router itself: the first POST to a path goes the generic way,
  and the route's handler reports itself in the scope (`ROUTED`); later POSTs to that same path (and root path
  "") are dispatched. A route that is not a fast-path route never reports, so its paths are never dispatched;
- the middlewares between this one and the router are checked when the stack is built: each must be one whose work
  is done here (ClientIpContext; Starlette's ExceptionMiddleware; BodyLimit, asked per request whether the body's
  declared length passes it untouched; FastAPI's AsyncExitStackMiddleware, which closes uploads' files only) or a
  class that says it passes a POST to /api/... on untouched (`passes_plain_api_posts`). Anything else there (a
  middleware added later) turns the dispatch off: nothing is ever skipped unseen (tests/api/test_fast_dispatch.py);
- the client-IP context is set as ClientIpContext sets it, and the scope the handler sees carries the routing keys
  the router set for that path; an exception the fast path raises is answered by the app's exception handlers as
  Starlette's ExceptionMiddleware would (the same handler lookup), anything else propagates as before;
- a request the fast path declines (nothing observable done yet: fast_path.py) goes the generic way, its body
  replayed; so does one without a declared Content-Length, over the JSON body limit, or with a query string.
"""

from __future__ import annotations

from typing import Any

from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette._exception_handler import _lookup_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.fast_path import ROUTED, BodyUnread, Declined, Routed, failing, replaying
from backend.api.limits import BodyLimit
from backend.auth.request_context import ClientIpContext, client_ip, request_line, request_scope

# Bounded whatever callers send: paths this short, at most this many remembered (all forgotten when full).
_MAX_PATHS = 1024
_MAX_PATH_CHARS = 200


def _skipped_stack(app: ASGIApp) -> tuple[ExceptionMiddleware | None, list[BodyLimit]]:
    """The layers between here and the router: the app's ExceptionMiddleware (None: the dispatch is off, for it or
    for a layer not known to pass a plain API POST on untouched) and the body limits to check per request."""
    errors, limits, node = None, [], app
    while not isinstance(node, Router):
        if isinstance(node, ExceptionMiddleware):
            errors = node
        elif isinstance(node, BodyLimit):
            limits.append(node)
        elif not (isinstance(node, AsyncExitStackMiddleware | ClientIpContext)
                  or getattr(type(node), "passes_plain_api_posts", False)):
            return None, []
        node = getattr(node, "app", None)
        if node is None:
            return None, []
    return errors, limits


class FastDispatch:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.errors, self.limits = _skipped_stack(app)
        self.routed: dict[str, Routed] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self.errors is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        routed = self.routed.get(path)
        if routed is None:
            await self._learning(path, scope, receive, send)
            return
        if scope.get("query_string") or not path.startswith("/api/") or not self._within_limits(scope):
            await self.app(scope, receive, send)
            return
        replay = await self._serve(routed, scope, receive, send)
        if replay is not None:  # declined, nothing observable done: the generic way, as if never here
            await self.app(scope, replay, send)

    def _within_limits(self, scope: Scope) -> bool:
        for limit in self.limits:
            if not limit.passes(scope):
                return False
        return True

    async def _learning(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        if len(path) > _MAX_PATH_CHARS:
            await self.app(scope, receive, send)
            return
        report: dict[str, Routed] = {}
        scope[ROUTED] = report
        try:
            await self.app(scope, receive, send)
        finally:
            if "routed" in report:
                if len(self.routed) >= _MAX_PATHS:
                    self.routed.clear()
                self.routed[path] = report["routed"]

    async def _serve(self, routed: Routed, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        child = {**scope, **routed.routing, "path_params": dict(routed.routing.get("path_params", {}))}
        request = Request(child, receive, send)
        client = scope.get("client")
        # What ClientIpContext sets (backend/auth/request_context.py), with the scope routing filled in.
        ip, line, current = (client_ip.set(client[0] if client else None),
                             request_line.set((scope["method"], scope["path"])), request_scope.set(child))
        try:
            try:
                response = await routed.fast(request)
            except Declined as declined:
                return replaying(declined.body, receive)
            except BodyUnread as unread:
                return failing(unread.cause)
            except Exception as exc:
                await self._answer(request, exc, child, receive, send)
                return None
            if response is None:
                return receive
            try:
                await response(child, receive, send)
            except Exception as exc:  # Starlette's words for a handled exception once the answer has started
                if self._handler(exc) is not None:
                    raise RuntimeError("Caught handled exception, but response already started.") from exc
                raise
            return None
        finally:
            request_scope.reset(current)
            request_line.reset(line)
            client_ip.reset(ip)

    def _handler(self, exc: Exception) -> Any:
        """The handler Starlette's ExceptionMiddleware picks for `exc` (starlette/_exception_handler.py)."""
        assert self.errors is not None
        handler = None
        if isinstance(exc, HTTPException):
            handler = self.errors._status_handlers.get(exc.status_code)
        return handler or _lookup_exception_handler(self.errors._exception_handlers, exc)

    async def _answer(self, request: Request, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._handler(exc)
        if handler is None:
            raise exc
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        if response is not None:
            await response(scope, receive, send)
        exc.__traceback__ = None  # as Starlette: a reused exception instance would pile up tracebacks
