"""An empty file attached in the chat is refused in words, not with a server error: Chainlit's upload route hands
the file's bytes to its session, which raises on empty content (a 500, and the browser's toast says only "Upload
failed"). This pure-ASGI middleware answers such an upload itself with a 400 whose detail the chat shows
("Could not add empty.txt: it is empty — nothing to add"). Only requests small enough to hold an empty file are
read ahead; any other upload goes on to Chainlit as it came, byte for byte."""

from __future__ import annotations

import json

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_PATH = "/chat/project/file"
PEEK_BYTES = 64 * 1024  # an empty file's multipart request is a few hundred bytes; anything larger holds data
EMPTY = "it is empty — nothing to add"


class EmptyUploadGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != UPLOAD_PATH:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        size, more = 0, True
        while more and size <= PEEK_BYTES:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":  # the client went away: let Chainlit see it as it is
                more = False
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if not more and read and read[-1]["type"] == "http.request" and await _holds_an_empty_file(scope, read):
            body = json.dumps({"detail": EMPTY}).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)


async def _holds_an_empty_file(scope: Scope, messages: list[Message]) -> bool:
    """Whether the (whole, small) multipart body carries a file of 0 bytes; a body that does not parse is left
    for Chainlit to answer."""
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.request", "body": b"", "more_body": False}

    try:
        form = await Request(scope, receive).form()
    except Exception:  # not multipart, malformed: not ours to judge
        return False
    try:
        for value in form.values():
            if isinstance(value, UploadFile) and (value.size == 0 if value.size is not None
                                                  else not await value.read(1)):
                return True
        return False
    finally:
        await form.close()
