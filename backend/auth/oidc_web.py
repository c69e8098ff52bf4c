"""The HTTP legs of the OIDC browser login around Chainlit's own OAuth routes.

Chainlit's `/chat/auth/oauth/{id}` builds the authorization URL itself and cannot add PKCE or a nonce,
and its provider hook `get_token(code, url)` never sees the request. So:
- `GET /chat/auth/oauth/oidc` is served by the parent app (declared before the Chainlit mount, so it
  wins): it creates state, nonce and PKCE verifier, sets Chainlit's `oauth_state` cookie (Chainlit's
  callback checks it) plus our encrypted flow cookie, and redirects to the provider;
- for `/chat/auth/oauth/oidc/callback` Chainlit's route runs, wrapped by `OidcCallbackContext`, which
  unseals the flow cookie, checks its state against the query, and hands the flow to the Chainlit
  provider (ui/oidc_provider.py) through a context variable; it also expires the flow cookie.
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.auth.jwt_verifier import DiscoveryError
from backend.auth.oidc import CALLBACK_PATH, FLOW_COOKIE, FLOW_TTL_S, LoginFlow, OidcLogin, OidcLoginError
from backend.auth.session_cookie import scope_cookies
from backend.errors import Unavailable

START_PATH = CALLBACK_PATH.removesuffix("/callback")
LOGIN_ERROR_URL = "/chat/login?error=oauthSignin"  # Chainlit's login page shows its sign-in error
SUCCESS_PATH = "/chat/login/callback"  # where Chainlit's callback sends a browser it has just signed in
_COOKIE_PATH = START_PATH

# The flow of the callback being handled, or the error explaining why there is none.
current_flow: contextvars.ContextVar[LoginFlow | OidcLoginError | None] = contextvars.ContextVar(
    "atrium_oidc_flow", default=None)


def install_oidc_login(app: FastAPI, login: OidcLogin, *,
                       on_failure: Callable[[OidcLoginError, str | None], None]) -> None:
    """Add the login route and the callback context; call before Chainlit is mounted.
    `on_failure(error, client_ip)` is told about every refused callback (the audit log)."""
    secure = bool(login.public_url and login.public_url.startswith("https://"))

    @app.get(START_PATH, include_in_schema=False)
    def oidc_start(request: Request, next: str | None = None) -> RedirectResponse:  # sync: may fetch discovery
        """`next`: the studio or operator page that sent the user here, to land on again after the login
        (anything else is ignored: the chat is the default landing)."""
        from chainlit.auth.cookie import set_oauth_state_cookie

        base = f"{request.url.scheme}://{request.url.netloc}"
        try:
            url, flow = login.start(base, return_to=next)
        except DiscoveryError as exc:
            raise Unavailable(f"the identity provider is not reachable: {exc}", code="idp_unavailable") from exc
        response = RedirectResponse(url, status_code=302)
        set_oauth_state_cookie(response, flow.state)
        response.set_cookie(FLOW_COOKIE, flow.seal(login.fernet), max_age=FLOW_TTL_S, path=_COOKIE_PATH,
                            httponly=True, samesite="lax", secure=secure)
        return response

    app.add_middleware(OidcCallbackContext, login=login, on_failure=on_failure)


class OidcCallbackContext:
    """Pure ASGI (no buffering of the response): sets `current_flow` for the callback request only."""

    def __init__(self, app: ASGIApp, login: OidcLogin,
                 on_failure: Callable[[OidcLoginError, str | None], None]) -> None:
        self.app = app
        self.login = login
        self.on_failure = on_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != CALLBACK_PATH:
            await self.app(scope, receive, send)
            return
        flow = self._flow(scope)
        client = scope.get("client")
        ip = client[0] if client else None
        expire = f"{FLOW_COOKIE}=; Max-Age=0; Path={_COOKIE_PATH}; HttpOnly; SameSite=lax".encode()
        if isinstance(flow, OidcLoginError):
            # A forged, replayed or stale callback never reaches Chainlit (nor the provider's token endpoint).
            self.on_failure(flow, ip)
            await send({"type": "http.response.start", "status": 302, "headers": [
                (b"location", LOGIN_ERROR_URL.encode()), (b"set-cookie", expire), (b"content-length", b"0"),
                (b"set-cookie", b"oauth_state=; Max-Age=0; Path=/; HttpOnly; SameSite=lax")]})
            await send({"type": "http.response.body", "body": b""})
            return
        token = current_flow.set(flow)

        async def send_expiring_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"set-cookie", expire)]
                if flow.return_to:
                    headers = _land_on(headers, flow.return_to)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_expiring_cookie)
        finally:
            current_flow.reset(token)

    def _flow(self, scope: Scope) -> LoginFlow | OidcLoginError:
        sealed = scope_cookies(scope).get(FLOW_COOKIE)
        if sealed is None:
            return OidcLoginError("login_flow_missing", "no login in progress in this browser (cookies blocked, "
                                  "or the login was started elsewhere); start again")
        try:
            flow = LoginFlow.unseal(sealed, self.login.fernet)
        except OidcLoginError as exc:
            return exc
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "error" in query:  # e.g. the user cancelled, or the IdP refused this client
            error = query["error"][0][:100]
            description = query.get("error_description", [""])[0][:300]
            return OidcLoginError(f"idp_error_{error}", description or f"the identity provider answered {error}")
        if not hmac.compare_digest(query.get("state", [""])[0], flow.state):
            return OidcLoginError("state_mismatch", "the provider's answer does not belong to this login")
        iss = query.get("iss", [None])[0]  # RFC 9207: defends against IdP mix-up when present
        if iss is not None and iss.rstrip("/") != self.login.issuer:
            return OidcLoginError("issuer_mismatch", f"the answer comes from {iss!r}, not {self.login.issuer!r}")
        return flow


def _land_on(headers: list[tuple[bytes, bytes]], page: str) -> list[tuple[bytes, bytes]]:
    """Chainlit ends a successful login with a redirect to its `/login/callback` page, which opens the chat;
    send the browser to `page` instead. Failures (a redirect to the login page with an error) are left alone."""
    return [(k, page.encode()) if k.lower() == b"location" and urlsplit(v.decode("latin-1")).path
            == SUCCESS_PATH else (k, v) for k, v in headers]
