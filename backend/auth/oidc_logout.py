"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): signing out of Atrium also ends the session at
the company's identity provider, so the next "Sign in with your company account" asks for the password again
instead of signing the same person straight back in (a shared or handed-over computer).

Chainlit's sign-out is a `fetch` (POST /chat/logout) followed by a page reload; the studio's and the operations
page's sign-out do the same. A fetch cannot be redirected to the provider, so this pure-ASGI middleware marks
the browser with a short-lived cookie when an IdP session signs out, and the next page the browser loads is a
redirect to the provider's `end_session_endpoint` (with `client_id` and `post_logout_redirect_uri` =
`{public URL}/chat/login`, which must be registered at the provider). Providers without that endpoint (e.g.
Google) are left alone: signing out of Atrium still ends Atrium's session.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.auth.jwt_verifier import DiscoveryError
from backend.auth.oidc import OidcLogin
from backend.auth.session_cookie import scope_cookies, session_user
from backend.auth.sessions import SessionRegistry

log = logging.getLogger("atrium.auth")

LOGOUT_PATH = "/chat/logout"
MARK_COOKIE = "atrium_idp_logout"
MARK_TTL_S = 120
AFTER_LOGOUT_PATH = "/chat/login"


class IdpLogout:
    passes_plain_api_posts = True  # a POST other than the sign-out passes untouched (FastDispatch skips it)

    def __init__(self, app: ASGIApp, login: OidcLogin, sessions: SessionRegistry) -> None:
        self.app = app
        self.login = login
        self.sessions = sessions
        self.secure = bool(login.public_url and login.public_url.startswith("https://"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path, cookies = scope["method"], scope["path"], scope_cookies(scope)
        # Asked before the sign-out revokes the session (ui/chat.py's on_logout); SQL, so off the event loop.
        if method == "POST" and path == LOGOUT_PATH and await asyncio.to_thread(_idp_session, cookies,
                                                                                self.sessions):
            await self.app(scope, receive, self._marking(send))
            return
        if method == "GET" and MARK_COOKIE in cookies and _navigation(scope):
            url = await self._end_session_url(scope)
            if url is not None:
                await _redirect(send, url, f"{MARK_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax")
                return
        await self.app(scope, receive, send)

    def _marking(self, send: Send) -> Send:
        cookie = (f"{MARK_COOKIE}=1; Max-Age={MARK_TTL_S}; Path=/; HttpOnly; SameSite=Lax"
                  + ("; Secure" if self.secure else ""))

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        return wrapped

    async def _end_session_url(self, scope: Scope) -> str | None:
        try:
            endpoint = await asyncio.to_thread(self.login.discovery.get, "end_session_endpoint")
        except DiscoveryError as exc:
            log.warning("identity provider unreachable at sign-out; its session stays open",
                        extra={"error": str(exc)})
            return None
        if not endpoint:
            return None
        headers = dict(scope.get("headers", []))
        base = self.login.public_url or f"{scope.get('scheme', 'http')}://{headers.get(b'host', b'').decode()}"
        query = urlencode({"client_id": self.login.client_id,
                           "post_logout_redirect_uri": base.rstrip("/") + AFTER_LOGOUT_PATH})
        return f"{endpoint}{'&' if '?' in str(endpoint) else '?'}{query}"


def _idp_session(cookies: dict[str, str], sessions: SessionRegistry) -> bool:
    """Whether the session signing out came from the identity provider (not the demo password login)."""
    user = session_user(cookies, sessions)
    return user is not None and (user.metadata or {}).get("provider") == "oidc"


def _navigation(scope: Scope) -> bool:
    """A page the browser navigates to (not the chat's own fetches and asset loads)."""
    accept = dict(scope.get("headers", [])).get(b"accept", b"")
    return b"text/html" in accept


async def _redirect(send: Send, location: str, cookie: str) -> None:
    await send({"type": "http.response.start", "status": 302, "headers": [
        (b"location", location.encode()), (b"set-cookie", cookie.encode()), (b"content-length", b"0"),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})
