"""What a browser is told and what it may do cross-site: security headers on every response, `Secure` cookies
behind https, and an Origin check on the unsafe requests a browser's cookie authenticates.

Pure ASGI: responses pass through untouched but for their start message (SSE streams are not held), except the
two constant API documentation pages, held whole once to hash their inline script.

- Every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (our URLs — tenant names,
  document ids — are never sent to other sites; same-origin POSTs still carry their real `Origin`), a CSP with
  `frame-ancestors 'none'` (no page of the app can be framed: the studio's publish button cannot be clickjacked),
  and HSTS when the request came over https (the scheme after uvicorn's trusted proxy headers).
- HTML pages: a CSP allowing only the app's own origin. Inline scripts run only when their hash is one of the
  app's own: the inline scripts of its templates as written in ui/, of Chainlit's page as Chainlit generates it
  (its theme is read once: a changed public/theme.json needs a restart), and of /docs and /redoc, which take no
  input (learned from their first response). No other page's hashes come from the response being sent, so markup
  injected into a page (or an HTML file served from an upload) does not run.
- Unsafe methods (POST, PUT, PATCH, DELETE) that a session cookie authenticates (no Authorization header), and
  always the chat's sign-in and sign-out (login CSRF): the `Origin` (else the `Referer`) must be the origin the
  request came to or ATRIUM_PUBLIC_URL; otherwise a 403 `cross_site_request`, audited. A request with neither
  header is let through: browsers send `Origin` with every cross-origin POST (and `null` where they hide it,
  which is refused), so only non-browser clients (curl, scripts) send neither, and those carry no victim's cookie.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import logging
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.auth.origins import header as _header
from backend.auth.origins import origin_of, own_origins
from backend.auth.session_cookie import scope_cookies, session_user
from backend.auth.sessions import SessionRegistry
from backend.governance.audit import AuditLog
from backend.settings import REPO_ROOT

log = logging.getLogger("atrium.browser")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALWAYS_CHECKED = frozenset({"/chat/login", "/chat/logout"})  # signing someone in or out needs no cookie
SESSION_COOKIE = "access_token"  # Chainlit's; a long token is split into access_token_0, _1, ...
CONSTANT_PAGES = frozenset({"/docs", "/redoc"})
HSTS = b"max-age=31536000; includeSubDomains"
UNSAFE_INLINE = "'unsafe-inline'"
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.I | re.S)
_JS_TYPES = {"", "text/javascript", "application/javascript", "module"}


def inline_script_hashes(html: str, *, skip_templated: bool = False) -> set[str]:
    """CSP sources ('sha256-...') for the executable inline scripts of `html` (data blocks such as
    type="application/json" never run, so they need none). `skip_templated`: a Jinja template's script whose text
    depends on the context cannot be hashed from its source."""
    hashes = set()
    for attrs, body in _SCRIPT.findall(html):
        kind = re.search(r"\btype\s*=\s*[\"']?([^\"'\s>]*)", attrs, re.I)
        if re.search(r"\bsrc\s*=", attrs, re.I) or (kind and kind.group(1).lower() not in _JS_TYPES):
            continue
        if skip_templated and any(mark in body for mark in ("{{", "{%", "{#")):
            continue
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes.add(f"'sha256-{digest}'")
    return hashes


@cache
def _template_hashes() -> frozenset[str]:
    """The studio's and the operator page's inline scripts, as written in their templates (no Jinja inside)."""
    hashes: set[str] = set()
    for path in sorted(Path(REPO_ROOT, "ui").glob("**/templates/*.html")):
        hashes |= inline_script_hashes(path.read_text(encoding="utf-8"), skip_templated=True)
    return frozenset(hashes)


@cache
def _chat_hashes() -> frozenset[str]:
    """Chainlit's page sets `global` and its theme in inline scripts; their text comes from its build and config."""
    from chainlit.server import get_html_template

    return frozenset(inline_script_hashes(get_html_template("/chat")))


class BrowserSecurity:
    def __init__(self, app: ASGIApp, *, audit: AuditLog | None = None, sessions: SessionRegistry | None = None,
                 public_url: str | None = None, idp_url: str | None = None,
                 route_of: Callable[[str, str], str] | None = None) -> None:
        self.app = app
        self.audit = audit
        self.sessions = sessions
        self.public_origin = origin_of(public_url) if public_url else None
        self.idp_origin = origin_of(idp_url) if idp_url else None
        # The audit names a refused request's route pattern, not its path (made-up paths group into one row).
        self.route_of = route_of or (lambda _method, path: path[:300])
        self._constant_hashes: dict[str, frozenset[str]] = {}
        self._warned: set[str] = set()  # origins whose refused sign-in was logged (once each)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._securing(scope, send)
        refusal = self._cross_site(scope)
        if refusal is not None:
            await self._refuse(scope, send, refusal)
            return
        path = scope.get("path", "")
        if path in CONSTANT_PAGES and path not in self._constant_hashes and scope.get("method") == "GET":
            await self.app(scope, receive, self._learning(path, send))
            return
        await self.app(scope, receive, send)

    # -- the Origin check ----------------------------------------------------------------------------------

    def _allowed_origins(self, scope: Scope) -> set[str]:
        return own_origins(scope, frozenset({self.public_origin} if self.public_origin else ()))

    def _cross_site(self, scope: Scope) -> str | None:
        """The foreign origin that sent an unsafe request this browser's cookie would authenticate, else None."""
        if scope.get("method") not in UNSAFE_METHODS:
            return None
        path = scope.get("path", "")
        if path not in ALWAYS_CHECKED:
            if _header(scope, b"authorization") is not None:  # a browser cannot add it cross-site (CORS)
                return None
            cookies = scope_cookies(scope)
            if SESSION_COOKIE not in cookies and f"{SESSION_COOKIE}_0" not in cookies:
                return None
        sent = _header(scope, b"origin")
        if sent is None:
            sent = _header(scope, b"referer")
            if sent is None:
                return None  # not a browser (see the module's docstring)
        if origin_of(sent) in self._allowed_origins(scope):
            return None
        return sent[:200] or "(empty)"

    async def _refuse(self, scope: Scope, send: Send, origin: str) -> None:
        path = scope.get("path", "")
        if path in ALWAYS_CHECKED:
            # Most often not an attack but a deployment: a proxy in front that changes the Host, and no
            # ATRIUM_PUBLIC_URL. The person signing in is told what happened; the operator, in the log, the fix.
            action = "Sign-in" if path.endswith("/login") else "Sign-out"
            detail = (f"{action} was refused: the page that sent it ({origin}) is not at this app's address. Open "
                      "the app at its own address; if it runs behind a proxy, its operator sets ATRIUM_PUBLIC_URL "
                      "to the address people open")
            self._warn_once(scope, origin)
        else:
            detail = (f"{scope.get('method')} {path} was sent by a page of another site ({origin}); this request is "
                      "only accepted from the app's own pages. Use the page at the app's address, or call the API "
                      "with an API key or a JWT (Authorization header) instead of a browser session")
        if self.audit is not None:
            await asyncio.to_thread(self._audit, scope, origin)
        body = json.dumps({"error": "cross_site_request", "detail": detail}).encode()
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    def _warn_once(self, scope: Scope, origin: str) -> None:
        if origin in self._warned or len(self._warned) > 100:
            return
        self._warned.add(origin)
        log.warning("a sign-in or sign-out came from a page at another address than this app's: if people open "
                    "Atrium through a proxy, set ATRIUM_PUBLIC_URL to that address",
                    extra={"origin": origin, "host": _header(scope, b"host"), "public_url": self.public_origin})

    def _audit(self, scope: Scope, origin: str) -> None:
        assert self.audit is not None
        user = session_user(scope_cookies(scope), self.sessions) if self.sessions is not None else None
        client = scope.get("client")
        self.audit.record("denied", subject=getattr(user, "identifier", None),
                          route=self.route_of(scope.get("method", "GET"), scope.get("path", "")),
                          ip=client[0] if client else None, status=403, reason="cross_site_request",
                          detail={"method": scope.get("method"), "origin": origin})

    # -- response headers -----------------------------------------------------------------------------------

    def _securing(self, scope: Scope, send: Send) -> Send:
        https = scope.get("scheme") == "https"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                html = content_type.lower().startswith(b"text/html")
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                            (b"content-security-policy", self._policy(scope, html).encode())]
                if https:
                    headers = [(k, _secure_cookie(v) if k.lower() == b"set-cookie" else v) for k, v in headers]
                    headers.append((b"strict-transport-security", HSTS))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    def _policy(self, scope: Scope, html: bool) -> str:
        if not html:
            # Nothing but HTML is a page: a file opened directly (an SVG, say) runs nothing and loads nothing.
            return "default-src 'none'; frame-ancestors 'none'"
        path = scope.get("path", "")
        chat = path == "/chat" or path.startswith("/chat/")
        scripts = {"'self'"} | (_chat_hashes() if chat else _template_hashes() | self._constant_hashes.get(path, set()))
        connect = ["'self'", "data:"]  # data: the chat's sources panels fetch their text from data: URLs
        for origin in sorted(self._allowed_origins(scope)):
            connect.append(origin.replace("http", "ws", 1))  # socket.io
        form = "'self'" + (f" {self.idp_origin}" if self.idp_origin else "")
        # Chainlit's components and ReDoc's styled-components write <style> elements and style attributes at run
        # time, with nothing to hash: those pages need inline styles (their scripts stay hashed). The studio, the
        # operator page and Swagger do not.
        return ("default-src 'self'; "
                f"script-src {' '.join(sorted(scripts))}; "
                f"style-src 'self'{' ' + UNSAFE_INLINE if chat or path == '/redoc' else ''}; "
                "img-src 'self' data:; "
                f"connect-src {' '.join(connect)}; "
                f"worker-src 'self'{' blob:' if path == '/redoc' else ''}; "  # ReDoc searches in a blob: worker
                "object-src 'none'; base-uri 'self'; "
                f"form-action {form}; frame-ancestors 'none'")

    def _learning(self, path: str, send: Send) -> Send:
        """Hold a constant page whole once: its inline scripts' hashes are added before its headers go out."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            assert start is not None
            body = b"".join(chunks)
            if start["status"] == 200:
                gzipped = (b"content-encoding", b"gzip") in [(k.lower(), v) for k, v in start.get("headers", [])]
                text = (gzip.decompress(body) if gzipped else body).decode("utf-8", "replace")
                self._constant_hashes[path] = frozenset(inline_script_hashes(text))
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return wrapped


_OURS = {b"x-content-type-options", b"referrer-policy", b"content-security-policy", b"strict-transport-security"}


def _secure_cookie(value: bytes) -> bytes:
    attrs = [a.strip().lower() for a in value.split(b";")[1:]]
    return value if b"secure" in attrs else value + b"; Secure"
