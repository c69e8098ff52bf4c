"""The outermost middleware: a request id for every request (kept from `X-Request-ID` when well-formed, sent back in
the response's), its trace id in every log line (backend/logs.py), the HTTP server span (backend/tracing.py; a new
trace, linked to the caller's `traceparent`) and
the HTTP metrics (backend/governance/metrics.py): route template, method, status, and the verified tenant (set by
backend/api/deps.py once the principal is known; never the URL's word alone).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import lru_cache

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.governance.metrics import NoMetrics
from backend.ids import random_hex
from backend.logs import RequestInfo, request_info
from backend.tracing import TENANT, recording, tracer

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # fullmatch: `$` would let a trailing newline through
# Span names and attributes stay bounded whatever the caller sends: a made-up method is `_OTHER` (the HTTP
# semantic conventions' word), the raw path is cut (the route template is the span's name).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_PATH = 256
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
# route_of scans the surface table's patterns (~0.06 profiled ms per request); a request's route depends on its
# method and path only, and the same few paths come again and again. Bounded whatever the callers send: at most
# this many remembered, and only paths this short.
_REMEMBERED_ROUTES = 2048
_REMEMBERED_PATH_CHARS = 200


def remembering(route_of: Callable[[str, str], str]) -> Callable[[str, str], str]:
    """`route_of` with its answers for short paths remembered (least recently used forgotten first)."""
    cached = lru_cache(maxsize=_REMEMBERED_ROUTES)(route_of)

    def lookup(method: str, path: str) -> str:
        return cached(method, path) if len(path) <= _REMEMBERED_PATH_CHARS else route_of(method, path)

    return lookup


def request_id_of(value: str | None) -> str:
    """The caller's request id when well-formed (1-128 of A-Z a-z 0-9 . _ -), else a new one."""
    if value and REQUEST_ID.fullmatch(value):
        return value
    return random_hex()


def _trace_id_of(traceparent: str | None) -> str:
    """Tracing off: the caller's W3C trace id (its lines and ours then correlate), else a new one."""
    m = _TRACEPARENT.match(traceparent or "")
    if m and m.group(1) != "0" * 32:
        return m.group(1)
    return random_hex()


class Observe:
    def __init__(self, app: ASGIApp, *, metrics: NoMetrics, route_of: Callable[[str, str], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = remembering(route_of)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # What FastAPI itself sets to keep a mounted FastAPI app (the chat, Chainlit's) from making spans of its own:
        # this request's span is this middleware's, the one Atrium's spans hang off.
        if scope["type"] == "websocket":
            scope["fastapi.telemetry"] = None
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
                   if k in (b"x-request-id", b"traceparent", b"tracestate")}
        scope["fastapi.telemetry"] = None
        rid = request_id_of(headers.get("x-request-id"))
        method, path = scope.get("method", "GET"), scope.get("path", "")
        status = 500  # what a request that raised before answering counts as
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        began = time.perf_counter()
        span, route = None, ""
        if recording():
            known, route = (method if method in _METHODS else "_OTHER"), self.route_of(method, path)
            # The caller's traceparent is a link, not the parent (OpenTelemetry's rule for a public endpoint): a caller
            # must not pile requests into one trace of its choosing, nor decide by its sampled flag whether Atrium's
            # spans are recorded; its own trace still leads here through the link.
            caller = trace.get_current_span(propagate.extract(headers)).get_span_context()
            span = tracer.start_span(f"{known} {route}", context=Context(), kind=SpanKind.SERVER,
                                     links=[Link(caller)] if caller.is_valid else None,
                                     attributes={"http.request.method": known, "url.path": path[:_MAX_PATH],
                                                 "atrium.request_id": rid})
            trace_id = format(span.get_span_context().trace_id, "032x")
        else:
            trace_id = _trace_id_of(headers.get("traceparent"))
        info = RequestInfo(request_id=rid, trace_id=trace_id)
        token = request_info.set(info)
        try:
            if span is not None:
                # No exception event: its message can quote what the caller sent (tracing.py keeps spans free of it).
                with trace.use_span(span, end_on_exit=False, record_exception=False):
                    await self.app(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            request_info.reset(token)
            if span is not None or self.metrics.enabled:
                route = route or self.route_of(method, path)
                self.metrics.http_request(route=route, method=method, status=status, tenant=info.tenant,
                                          seconds=time.perf_counter() - began)
                if span is not None:
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if info.tenant:
                        span.set_attribute(TENANT, info.tenant)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    span.end()
