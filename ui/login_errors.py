"""Chainlit answers a wrong password with the code `credentialssignin`, which its UI shows verbatim in a toast;
this pure-ASGI middleware puts words there instead (only for 401s of the password login route)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from ui.asgi_rewrite import Headers, rewrite_response

LOGIN_PATH = "/chat/login"
MESSAGE = "Wrong username or password."
_BODY = json.dumps({"detail": MESSAGE}).encode()


def _words(headers: Headers, _body: bytes) -> tuple[Headers, bytes]:
    return headers, _BODY


class FriendlyLoginErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LOGIN_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        await rewrite_response(self.app, scope, receive, send, wanted=lambda start: start["status"] == 401,
                               rewrite=_words)
