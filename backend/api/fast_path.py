"""A route that answers its common request without FastAPI's per-request dependency solving.

FastAPI solves a route's dependency tree on every request: for each node it reads the path, query, header and
cookie parameters, builds cache keys, and validates the body through its generic machinery. For the
OpenAI-compatible chat completion that was ~0.7 profiled ms per request of FastAPI's own work around checks
that take ~0.2 (bench/gateway/cprofile_request.py). `FastPathRoute` keeps the route exactly as declared (its
dependencies, body model and responses stay what the OpenAPI schema, the surface table check in
backend/auth/surface.py and FastAPI's own handler use) and puts a `fast` function in front of FastAPI's handler:

- the endpoint names it (`endpoint.fast_path = fast`) together with the dependencies it does itself
  (`fast.replaces`, in order). When the route's effective dependencies (the app's and router's included) are not
  exactly those, with nothing nested in them, the route has no fast path: a dependency added later is never
  skipped; the route is simply served by FastAPI again (tests/api/test_openai_fast_path.py says so first);
- `fast(request)` answers, or declines *before doing anything observable* (no audit, no span, nothing sent) when
  the request is not the plain case it handles: it returns None before reading the body, or raises Declined(body)
  after (read_body); FastAPI's handler then serves it as it always did, in its own order and words (a bad body, a
  query string, another content type, dependency overrides in tests), reading the same body from a replay; a body
  that could not be read is handed on as the same failure, so FastAPI answers it as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

Fast = Callable[[Request], Awaitable[Response | None]]
ROUTED = "atrium.fast_route"  # scope key: a fast path's handler reports its route in the dict found there
ROUTING_KEYS = ("endpoint", "path_params", "route", "router")  # what the router put in the scope for the path


@dataclass(frozen=True)
class Routed:
    """Where the router sends a path: this fast path, with these routing keys in the scope (fast_dispatch.py)."""

    fast: Fast
    routing: dict[str, Any]


def report_route(scope: Scope, fast: Fast) -> None:
    """The router sent this request to a fast path's handler: say so to FastDispatch, which asked (`ROUTED`)."""
    report = scope.get(ROUTED)
    # Not from inside a mounted app (a root path of its own): the dispatcher serves the app it is installed in.
    if report is not None and not report and not scope.get("root_path"):
        report["routed"] = Routed(fast, {k: scope[k] for k in ROUTING_KEYS if k in scope})


class Declined(Exception):  # noqa: N818 - not an error: the fast path hands the request on
    """Raised by a fast path that read the body and then leaves the request to FastAPI's handler."""

    def __init__(self, body: bytes) -> None:
        super().__init__("declined")
        self.body = body


class BodyUnread(Exception):
    """Raised by a fast path whose `await request.body()` failed: FastAPI's handler is given the failure."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def read_body(request: Request) -> bytes:
    """The request's whole body for a fast path, read from its ASGI messages (Starlette's `Request.body()` costs an
    async generator and its closing per request). Should the fast path then decline, FastAPI's handler is given a
    request that replays this body (FastPathRoute). A failure to read it is FastAPI's to answer (BodyUnread)."""
    chunks: list[bytes] = []
    try:
        while True:
            message = await request.receive()
            if message["type"] != "http.request":  # http.disconnect: what Starlette's body() raises for it
                raise ClientDisconnect()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
    except Exception as exc:  # a client gone, a body limit: FastAPI's handler says it in its words
        raise BodyUnread(exc) from exc


def _effective_dependant(route: APIRoute) -> Any:
    """The dependant FastAPI's handler for this build of the route uses: with the app's and the including routers'
    dependencies when the route is built for an inclusion (FastAPI >= 0.16x builds one handler per inclusion)."""
    try:
        from fastapi.routing import _effective_route_context_var
    except ImportError:  # another FastAPI: the route's own dependant is what its handler uses
        return route.dependant
    context = _effective_route_context_var.get()
    if context is not None and getattr(context, "original_route", None) is route:
        return context.dependant
    return route.dependant


def replaced_exactly(dependant: Any, replaces: tuple[Callable[..., Any], ...]) -> bool:
    """Whether the route's dependencies are exactly `replaces`, in order, none with dependencies of its own, and
    the endpoint itself reads nothing from the query, headers or cookies (only what a fast path does itself)."""
    calls = tuple(sub.call for sub in dependant.dependencies)
    return (calls == replaces and not any(sub.dependencies for sub in dependant.dependencies)
            and not (dependant.query_params or dependant.header_params or dependant.cookie_params))


class FastPathRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        slow = super().get_route_handler()
        fast: Fast | None = getattr(self.endpoint, "fast_path", None)
        if fast is None or not replaced_exactly(_effective_dependant(self), getattr(fast, "replaces", ())):
            return slow
        self.fast_path_active = True  # for the test that the chat completion is really served this way

        async def handler(request: Request) -> Response:
            if ROUTED in request.scope:  # FastDispatch learns that the router sends this path here
                report_route(request.scope, fast)
            try:
                response = await fast(request)
            except Declined as declined:  # its body was read: FastAPI's handler reads it again from a replay
                return await slow(Request(request.scope, replaying(declined.body, request.receive)))
            except BodyUnread as unread:
                return await slow(Request(request.scope, failing(unread.cause)))
            return response if response is not None else await slow(request)

        return handler


def replaying(body: bytes, then: Receive) -> Receive:
    """The body read, then the connection's own messages (a streamed answer listens there for a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


def failing(exc: Exception) -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        raise exc

    return receive
