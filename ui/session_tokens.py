"""Chainlit under Atrium's session rules: its HTTP routes and its socket connect accept exactly the session tokens
the API accepts (backend/auth/sessions.py), and its sign-out revokes the session on the server.

Chainlit verifies a token in `chainlit.auth.authenticate_user` (reached from every route's `get_current_user` and
from the socket's connect) through the module-level `decode_jwt`; both are looked up at call time, so `install`
replaces them. The check runs SQL, so the async replacement runs it in a worker thread and hands the verified user
to `decode_jwt` through a context variable; a `decode_jwt` call from anywhere else verifies on its own.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse

from backend.auth.request_context import client_ip, request_line
from backend.auth.session_cookie import session_token
from backend.auth.sessions import SessionCheck
from backend.container import Services, get_services

log = logging.getLogger("atrium.auth")

LOGOUT_ROUTE = "/chat/logout"
# (token, user) that this task's authenticate_user has just verified.
_verified: ContextVar[tuple[str, Any] | None] = ContextVar("atrium_chat_token", default=None)
_services: Services | None = None


def _user(check: SessionCheck) -> Any:
    from chainlit.user import User

    assert check.payload is not None
    return User(**{k: v for k, v in check.payload.items() if k not in ("exp", "iat")})


def _refused(services: Services, check: SessionCheck) -> None:
    """Audit a refused token (a missing one is just a visitor of the sign-in page: not a denial)."""
    if check.reason == "no_session":
        return
    line = request_line.get()
    services.audit.record("denied", subject=check.subject, route=line[1] if line else "chat:socket_connect",
                          ip=client_ip.get(), status=401, reason=check.reason,
                          detail={"message": check.message, "method": line[0] if line else "CONNECT"})


def install(services: Services) -> None:
    """Idempotent: Chainlit's modules are process-wide, and the latest call's services are the ones used."""
    global _services
    _services = services
    import chainlit.auth as chainlit_auth
    from jwt import InvalidTokenError

    if getattr(chainlit_auth.authenticate_user, "atrium_sessions", False):
        return
    original = chainlit_auth.authenticate_user

    def decode_jwt(token: str) -> Any:
        done = _verified.get()
        if done is not None and done[0] == token:
            return done[1]
        check = _current().sessions.verify(token)
        if check.payload is None:
            raise InvalidTokenError(check.message)
        return _user(check)

    async def authenticate_user(token: str) -> Any:
        services = _current()
        check = await asyncio.to_thread(services.sessions.verify, token)
        if check.payload is None:
            await asyncio.to_thread(_refused, services, check)
            raise HTTPException(status_code=401, detail=check.message)
        mark = _verified.set((token, _user(check)))
        try:
            return await original(token)  # Chainlit's own: the persisted user from the data layer
        finally:
            _verified.reset(mark)

    authenticate_user.atrium_sessions = True  # type: ignore[attr-defined]
    chainlit_auth.decode_jwt = decode_jwt
    chainlit_auth.authenticate_user = authenticate_user


def _current() -> Services:
    assert _services is not None
    return _services


async def sign_out(request: Request, response: Response) -> Any:
    """Chainlit's on_logout (POST /chat/logout; the studio's and /admin's sign-out post there too): the session is
    revoked in the database, so a copy of the token is refused by every replica from now on. When that fails the
    browser keeps its cookie (a 503 instead of Chainlit's cleared cookie): a sign-out that did not happen must
    not look as if it had."""
    services = get_services()
    token = session_token(request.cookies)
    try:
        subject = await asyncio.to_thread(services.sessions.sign_out, token)
    except Exception:
        log.exception("sign-out could not revoke the session")
        return JSONResponse({"error": "sign_out_failed", "detail": "the session could not be ended on the server; "
                             "try signing out again"}, status_code=503)
    if subject is not None:
        await asyncio.to_thread(services.audit.record, "logout", subject=subject, route=LOGOUT_ROUTE,
                                ip=client_ip.get(), status=200)
    return {"success": True}
