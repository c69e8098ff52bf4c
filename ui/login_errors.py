"""Chainlit answers a wrong password with the code `credentialssignin`, which its UI shows verbatim in a toast;
this pure-ASGI middleware puts words there instead (only for 401s of the password login route)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOGIN_PATH = "/chat/login"
MESSAGE = "Wrong username or password."


class FriendlyLoginErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LOGIN_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        replaced = False

        async def wrapped(message: Message) -> None:
            nonlocal start, replaced
            if replaced:
                return  # the rest of the original 401 body
            if message["type"] == "http.response.start":
                if message["status"] != 401:
                    await send(message)
                    return
                start = message  # hold it: the body (and its length) changes
                return
            if start is None:
                await send(message)
                return
            body = json.dumps({"detail": MESSAGE}).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            replaced = True

        await self.app(scope, receive, wrapped)
