"""The chat's password sign-in, before and after Chainlit's route (pure ASGI, POST /chat/login only):
- before: a sign-in refused for too many failures is answered here with a 429 and Retry-After, in words, before
  any password is hashed (Chainlit's callback cannot answer anything but "wrong password");
- after: Chainlit answers a wrong password with the code `credentialssignin`, which its UI shows verbatim in a
  toast; the 401's body is put in words instead."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.asgi_rewrite import Headers, rewrite_response

LOGIN_PATH = "/chat/login"
MESSAGE = "Wrong username or password."
_BODY = json.dumps({"detail": MESSAGE}).encode()
MAX_FORM_BYTES = 16 * 1024  # a user name and a password; a larger form goes on to Chainlit unread


def _words(headers: Headers, _body: bytes) -> tuple[Headers, bytes]:
    return headers, _BODY


class FriendlyLoginErrors:
    def __init__(self, app: ASGIApp, *, password_login: Callable[[], Any] | None = None) -> None:
        self.app = app
        self.password_login = password_login  # -> the PasswordLogin service, or None (no password sign-in)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LOGIN_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        service = self.password_login() if self.password_login is not None else None
        if service is not None:
            read, body = await _read_small(receive)
            username = await _form_field(scope, body, "username")
            client = scope.get("client")
            refusal = await service.refusal(username, ip=client[0] if client else None) if username else None
            if refusal is not None:
                payload = json.dumps({"detail": refusal.message}).encode()
                await send({"type": "http.response.start", "status": 429, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                    (b"retry-after", str(refusal.retry_after_s).encode())]})
                await send({"type": "http.response.body", "body": payload})
                return

            async def replay() -> Message:
                return read.pop(0) if read else await receive()

            receive = replay
        await rewrite_response(self.app, scope, receive, send, wanted=lambda start: start["status"] == 401,
                               rewrite=_words)


async def _read_small(receive: Receive) -> tuple[list[Message], bytes]:
    """The request's messages read so far (to replay) and its body when it is small and complete, else b""."""
    read: list[Message] = []
    size, more = 0, True
    while more and size <= MAX_FORM_BYTES:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    complete = not more and read and read[-1]["type"] == "http.request"
    return read, b"".join(m.get("body", b"") for m in read) if complete else b""


async def _form_field(scope: Scope, body: bytes, name: str) -> str | None:
    """A text field of the sign-in form (Chainlit's page posts multipart form data; scripts often url-encode);
    None when the body is not a small, complete form."""
    if not body:
        return None
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.request", "body": b"", "more_body": False}

    try:
        form = await Request(scope, receive).form()
    except Exception:  # not a form, or malformed: Chainlit answers it as it does
        return None
    try:
        value = form.get(name)
        return value if isinstance(value, str) else None
    finally:
        await form.close()
