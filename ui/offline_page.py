"""The chat page makes no request outside the app: Chainlit's index.html links KaTeX's stylesheet from a CDN
(and Google Fonts, which public/theme.json's empty `custom_fonts` removes). Offline those requests fail, and
in a company network they tell a third party who opens the chat. This pure-ASGI middleware drops external
stylesheet links from the chat's HTML pages (math is still rendered, without KaTeX's fonts).

It also drops the share tags that would name Chainlit (its banner as og:image, its GitHub page as og:url: the
others name Atrium, from .chainlit/config.toml), and marks a page requested without any session cookie
(`<meta name="atrium-session" content="none">`): public/atrium.js then answers the page's "who am I?" request
itself instead of letting it fail with a 401 in the browser's console on every sign-in page."""

from __future__ import annotations

import gzip
import os
import re

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.asgi_rewrite import Headers, rewrite_response

CHAT_PREFIX = "/chat"
_EXTERNAL_STYLESHEET = re.compile(rb"<link\b[^>]*\bhref=\"https?://[^\"]+\"[^>]*>", re.I)
_CHAINLIT_META = re.compile(rb"\s*<meta\b[^>]*\bcontent=\"[^\"]*chainlit[^\"]*\"[^>]*>", re.I)
_HEAD_END = b"</head>"
SIGNED_OUT_MARK = b'<meta name="atrium-session" content="none">'
# Chainlit's session cookie (split into <name>_0, _1... when long), named as Chainlit names it.
SESSION_COOKIE = os.environ.get("CHAINLIT_AUTH_COOKIE_NAME", "access_token")


def _html(start: Message) -> bool:
    return dict(start.get("headers", [])).get(b"content-type", b"").startswith(b"text/html")


def _strip(headers: Headers, body: bytes, *, signed_out: bool = False) -> tuple[Headers, bytes]:
    gzipped = dict(headers).get(b"content-encoding") == b"gzip"  # Chainlit's GZip middleware
    body = _EXTERNAL_STYLESHEET.sub(b"", gzip.decompress(body) if gzipped else body)
    body = _CHAINLIT_META.sub(b"", body)
    if signed_out:
        body = body.replace(_HEAD_END, SIGNED_OUT_MARK + _HEAD_END, 1)
    return [(k, v) for k, v in headers if not (gzipped and k.lower() == b"content-encoding")], body


def _signed_out(scope: Scope) -> bool:
    """No session cookie at all (a first visit, or after signing out): the page's user is nobody yet."""
    cookie = next((v for k, v in scope.get("headers", []) if k == b"cookie"), b"")
    return not any(name.startswith(SESSION_COOKIE) for name in cookie_parser(cookie.decode("latin-1")))


class OfflineChatPage:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(CHAT_PREFIX):
            await self.app(scope, receive, send)
            return
        signed_out = _signed_out(scope)
        await rewrite_response(self.app, scope, receive, send, wanted=_html,
                               rewrite=lambda headers, body: _strip(headers, body, signed_out=signed_out))
