"""The chat page makes no request outside the app: Chainlit's index.html links KaTeX's stylesheet from a CDN
(and Google Fonts, which public/theme.json's empty `custom_fonts` removes). Offline those requests fail, and
in a company network they tell a third party who opens the chat. This pure-ASGI middleware drops external
stylesheet links from the chat's HTML pages (math is still rendered, without KaTeX's fonts)."""

from __future__ import annotations

import gzip
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.asgi_rewrite import Headers, rewrite_response

CHAT_PREFIX = "/chat"
_EXTERNAL_STYLESHEET = re.compile(rb"<link\b[^>]*\bhref=\"https?://[^\"]+\"[^>]*>", re.I)


def _html(start: Message) -> bool:
    return dict(start.get("headers", [])).get(b"content-type", b"").startswith(b"text/html")


def _strip(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    gzipped = dict(headers).get(b"content-encoding") == b"gzip"  # Chainlit's GZip middleware
    body = _EXTERNAL_STYLESHEET.sub(b"", gzip.decompress(body) if gzipped else body)
    return [(k, v) for k, v in headers if not (gzipped and k.lower() == b"content-encoding")], body


class OfflineChatPage:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(CHAT_PREFIX):
            await self.app(scope, receive, send)
            return
        await rewrite_response(self.app, scope, receive, send, wanted=_html, rewrite=_strip)
