"""The chat page makes no request outside the app: Chainlit's index.html links KaTeX's stylesheet from a CDN
(and Google Fonts, which public/theme.json's empty `custom_fonts` removes). Offline those requests fail, and
in a company network they tell a third party who opens the chat. This pure-ASGI middleware drops external
stylesheet links from the chat's HTML pages (math is still rendered, without KaTeX's fonts)."""

from __future__ import annotations

import gzip
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CHAT_PREFIX = "/chat"
_EXTERNAL_STYLESHEET = re.compile(rb"<link\b[^>]*\bhref=\"https?://[^\"]+\"[^>]*>", re.I)


class OfflineChatPage:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(CHAT_PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    await send(message)
                    return
                start = message  # hold it: the body (and its length) changes
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            gzipped = dict(start.get("headers", [])).get(b"content-encoding") == b"gzip"  # Chainlit's GZip
            body = _EXTERNAL_STYLESHEET.sub(b"", gzip.decompress(body) if gzipped else body)
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() != b"content-length" and not (gzipped and k.lower() == b"content-encoding")]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, wrapped)
