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
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from backend.auth.guard import SessionCaller, decide, is_operator
from backend.auth.origins import origin_of, own_origins
from backend.auth.principal import Principal
from backend.auth.session_cookie import scope_cookies, session_token
from backend.auth.surface import CHAT_PREFIX, SOCKET_PATH, HttpEntry, SurfaceTable

# (scope, principal) -> the tenant the request is about, or None when the thing it names does not exist.
TenantResolver = Callable[[Scope, Principal], str | None]
SessionCallerOf = Callable[[str | None], SessionCaller]  # a session token -> who it is (auth/guard.py)
SESSION_COOKIE = "access_token"  # Chainlit's
NOTICE_COOKIE = "atrium_session_notice"  # why the last session ended, for the sign-in page (read by atrium.js)
Audit = Callable[..., object]


class SurfaceGuard:
    passes_plain_api_posts = True  # only the chat's paths are its (FastDispatch skips it for /api/ POSTs)

    def __init__(self, app: ASGIApp, *, table: SurfaceTable, session_caller: SessionCallerOf,
                 audit: Audit, origins: frozenset[str] = frozenset(),
                 tenant_resolvers: dict[str, TenantResolver] | None = None,
                 socket_owner: Callable[[Scope], str | None] | None = None) -> None:
        self.app = app
        self.table = table
        self.session_caller = session_caller
        self.audit = audit
        self.origins = frozenset(o for o in (origin_of(x) for x in origins) if o)
        self.tenant_resolvers = tenant_resolvers or {}
        self.socket_owner = socket_owner  # the user of the socket a transport request names, if it is connected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not (path == CHAT_PREFIX or path.startswith("/chat/")):
            await self.app(scope, receive, send)
            return
        # Chainlit falls back to an `Authorization: Bearer` session token when there is no cookie; the chat is
        # for browsers and its session is the cookie, checked here.
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k != b"authorization"]}
        method = scope.get("method", "GET")
        entry = self.table.match(method, path).entry
        if entry is None:
            await _refuse(scope, send, 404, "not_found", f"no route {method} {path}")
            return
        if entry.guard.kind == "anonymous":
            await self.app(scope, receive, send)
            return
        token = session_token(scope_cookies(scope))
        # The session check reads the revocation list (SQL): off the event loop.
        caller = await asyncio.to_thread(self.session_caller, token) if token else None
        refusal = (self._blocked(entry, method, path) or self._socket_refusal(scope, caller)
                   or self._session_refusal(entry, caller) or self._role_refusal(scope, entry, caller))
        if refusal is None:
            await self.app(scope, receive, send)
        elif refusal.audited:
            subject = caller.principal.subject if caller and caller.principal else (
                caller.check.subject if caller is not None else None)
            await self._deny(scope, send, refusal, subject=subject)
        else:
            await _refuse(scope, send, refusal.status, refusal.code, refusal.message)

    @staticmethod
    def _blocked(entry: HttpEntry, method: str, path: str) -> Refusal | None:
        if entry.guard.kind != "blocked":
            return None
        # Answered like an unknown path (what the framework offers is nobody's business); audited with why.
        return Refusal(404, "not_found", f"no route {method} {path}", reason="route_blocked",
                       detail={"why": entry.why})

    def _socket_refusal(self, scope: Scope, caller: SessionCaller | None) -> Refusal | None:
        if not scope.get("path", "").startswith(SOCKET_PATH):
            return None
        origin = dict(scope.get("headers", [])).get(b"origin")
        # Browsers always send Origin on a websocket and on a cross-site request; scripts may send none.
        if origin is not None and origin_of(origin.decode("latin-1")) not in own_origins(scope, self.origins):
            return Refusal(403, "cross_site_socket", "the chat's socket only takes connections from this app's own "
                           f"pages, not {origin.decode('latin-1')[:100]!r}")
        principal = caller.principal if caller is not None else None
        if principal is not None and self.socket_owner is not None:
            # The socket's transport id (engine.io `sid`) names a connection: only its own user may use it (it
            # shows in access logs' query strings; a valid cookie of someone else's ran the socket as its owner).
            owner = self.socket_owner(scope)
            if owner is not None and owner != principal.subject:
                return Refusal(403, "socket_not_yours", "this socket belongs to another session: reload the chat page")
        return None

    @staticmethod
    def _session_refusal(entry: HttpEntry, caller: SessionCaller | None) -> Refusal | None:
        if caller is not None and caller.principal is not None:
            return None
        if caller is None and entry.probe:  # the page asking whether it is signed in: it is not (no refusal)
            return Refusal(401, "not_authenticated", "not signed in: sign in at /chat/login", audited=False)
        if caller is not None and caller.check.reason:
            # A cookie that no longer works is cleared, and the sign-in page is told why (public/atrium.js).
            return Refusal(401, caller.check.reason, caller.check.message, notice=caller.check.reason)
        return Refusal(401, "not_authenticated", "not signed in, or the session has ended: sign in at /chat/login",
                       notice="session_invalid" if caller is not None else None)

    def _role_refusal(self, scope: Scope, entry: HttpEntry, caller: SessionCaller | None) -> Refusal | None:
        principal = caller.principal if caller is not None else None
        assert principal is not None  # _session_refusal came first
        guard = entry.guard
        if guard.kind == "platform_admin" and not is_operator(principal):
            return Refusal(403, "missing_role", "this needs the platform_admin role")
        if guard.kind != "tenant":
            return None
        resolve = self.tenant_resolvers.get(guard.tenant_from)
        tenant = resolve(scope, principal) if resolve else None
        if tenant is None:
            return Refusal(404, "unknown_session", "no chat session of yours by that id: reload the chat page")
        denial = decide(principal, tenant, guard.permission)
        if denial is None:
            return None
        return Refusal(denial.status, denial.code, denial.message, tenant=tenant)

    async def _deny(self, scope: Scope, send: Send, refusal: Refusal, *, subject: str | None) -> None:
        client = scope.get("client")
        # The route's pattern, not the path: refusals of made-up ids on one route are one audit row with a count.
        route = self.table.route_of(scope.get("method", "GET"), scope.get("path", ""))
        await asyncio.to_thread(self.audit, "denied", subject=subject, tenant=refusal.tenant, route=route,
                                ip=client[0] if client else None, status=refusal.status,
                                reason=refusal.reason or refusal.code,
                                detail={"message": refusal.message, "method": scope.get("method", "WEBSOCKET"),
                                        **(refusal.detail or {})})
        await _refuse(scope, send, refusal.status, refusal.code, refusal.message, notice=refusal.notice)


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str  # what the caller is told
    message: str
    reason: str | None = None  # what the audit records, when it differs from `code`
    detail: dict | None = None
    notice: str | None = None  # why the session ended, for the sign-in page (and the dead cookie is cleared)
    tenant: str | None = None
    audited: bool = True


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str, *,
                  notice: str | None = None) -> None:
    if scope["type"] == "websocket":  # closing before accepting: the server answers the handshake with a 403
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    body = json.dumps({"error": code, "detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if notice is not None:
        headers += [(b"set-cookie", f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax".encode()),
                    (b"set-cookie", f"{NOTICE_COOKIE}={notice}; Path=/chat; Max-Age=120; SameSite=Lax".encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def query_param(scope: Scope, name: str) -> str | None:
    """The one value of a query parameter; None when absent or repeated (which of two values counts would depend
    on who reads it: the guard read the first, Chainlit the last)."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values and len(values) == 1 else None
