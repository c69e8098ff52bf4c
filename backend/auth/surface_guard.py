"""The surface guard: requests to the mounted chat (Chainlit) pass only as the surface table allows.

Pure ASGI in front of everything, so nothing the chat framework exposes is reached by a request the table does
not list: an unlisted chat path is a 404, a blocked one a 404 and an audited denial, a `signed_in` one needs a
valid unrevoked session, and the chat's upload needs the ingest permission in the department of the chat session
it names. Atrium's own routes are checked against the table when the app is built (surface.verify_app_routes) and
guarded by their dependencies; they pass here untouched, at the cost of one prefix test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from backend.auth.guard import decide, is_operator
from backend.auth.origins import origin_of, own_origins
from backend.auth.principal import Principal
from backend.auth.session_cookie import scope_cookies
from backend.auth.surface import CHAT_PREFIX, SOCKET_PATH, SurfaceTable

# (scope, principal) -> the tenant the request is about, or None when the thing it names does not exist.
TenantResolver = Callable[[Scope, Principal], str | None]
SessionPrincipal = Callable[[dict[str, str]], Principal | None]
Audit = Callable[..., object]


class SurfaceGuard:
    def __init__(self, app: ASGIApp, *, table: SurfaceTable, session_principal: SessionPrincipal,
                 audit: Audit, origins: frozenset[str] = frozenset(),
                 tenant_resolvers: dict[str, TenantResolver] | None = None) -> None:
        self.app = app
        self.table = table
        self.session_principal = session_principal
        self.audit = audit
        self.origins = frozenset(o for o in (origin_of(x) for x in origins) if o)
        self.tenant_resolvers = tenant_resolvers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not (path == CHAT_PREFIX or path.startswith("/chat/")):
            await self.app(scope, receive, send)
            return
        # Chainlit falls back to an `Authorization: Bearer` session token when there is no cookie; the chat is
        # for browsers and its session is the cookie, checked here.
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k != b"authorization"]}
        method = scope.get("method", "GET")
        match = self.table.match(method, path)
        entry = match.entry
        if entry is None:
            await _refuse(scope, send, 404, "not_found", f"no route {method} {path}")
            return
        guard = entry.guard
        if guard.kind == "anonymous":
            await self.app(scope, receive, send)
            return
        cookies = scope_cookies(scope)
        # The session check may read the revocation list (SQL): off the event loop.
        principal = await asyncio.to_thread(self.session_principal, cookies) if cookies else None
        subject = principal.subject if principal else None
        if guard.kind == "blocked":
            await self._deny(scope, send, 404, "route_blocked",
                             f"{method} {path} is not available here ({entry.why})", subject=subject)
            return
        if path.startswith(SOCKET_PATH):
            origin = dict(scope.get("headers", [])).get(b"origin")
            # Browsers always send Origin on a websocket and on a cross-site request; scripts may send none.
            if origin is not None and origin_of(origin.decode("latin-1")) not in own_origins(scope, self.origins):
                await self._deny(scope, send, 403, "cross_site_socket",
                                 f"the chat's socket only takes connections from this app's own pages, not "
                                 f"{origin.decode('latin-1')[:100]!r}", subject=subject)
                return
        if principal is None:
            await self._deny(scope, send, 401, "not_authenticated",
                             "not signed in, or the session has ended: sign in at /chat/login", subject=None)
            return
        if guard.kind == "tenant":
            resolve = self.tenant_resolvers.get(guard.tenant_from)
            tenant = resolve(scope, principal) if resolve else None
            if tenant is None:
                await self._deny(scope, send, 404, "unknown_session",
                                 "no chat session of yours by that id: reload the chat page", subject=subject)
                return
            if (denial := decide(principal, tenant, guard.permission)) is not None:
                await self._deny(scope, send, denial.status, denial.code, denial.message, subject=subject,
                                 tenant=tenant)
                return
        elif guard.kind == "platform_admin" and not is_operator(principal):
            await self._deny(scope, send, 403, "missing_role", "this needs the platform_admin role", subject=subject)
            return
        await self.app(scope, receive, send)

    async def _deny(self, scope: Scope, send: Send, status: int, code: str, message: str, *,
                    subject: str | None, tenant: str | None = None) -> None:
        client = scope.get("client")
        await asyncio.to_thread(self.audit, "denied", subject=subject, tenant=tenant, route=scope.get("path", "")[:200],
                                ip=client[0] if client else None, status=status, reason=code,
                                detail={"message": message, "method": scope.get("method", "WEBSOCKET")})
        await _refuse(scope, send, status, code, message)


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if scope["type"] == "websocket":  # closing before accepting: the server answers the handshake with a 403
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    body = json.dumps({"error": code, "detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def query_param(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None
