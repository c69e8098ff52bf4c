"""The chat's middlewares still guard the chat's requests; an API request goes past them untouched."""

from __future__ import annotations

import asyncio
import json

from ui.chat_guards import ChatGuards
from ui.login_errors import MESSAGE


def _run(scope: dict, messages: list[dict], answer: tuple[int, bytes] = (200, b"{}")) -> tuple[list, list, list]:
    """(what the app received, the receive callables it was given, what was sent)."""
    got, receives, sent = [], [], []

    async def app(scope, receive, send):
        receives.append(receive)
        got.append(await receive())
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": answer[0],
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": answer[1]})

    pending = list(messages)

    async def receive():
        return pending.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(ChatGuards(app)(scope, receive, send))
    return got, receives, [receive]


def _http(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}


def test_an_api_request_goes_past_the_chat_guards():
    reached = []

    async def app(scope, receive, send):
        reached.append(("app", scope["path"]))

    async def chat_chain(scope, receive, send):
        reached.append(("guards", scope["path"]))

    guards = ChatGuards(app)
    guards.chat = chat_chain
    for path in ("/api/t/sales/v1/chat/completions", "/chat/login", "/apiary", "/"):
        asyncio.run(guards(_http("POST", path), None, None))
    asyncio.run(guards({"type": "websocket", "path": "/api/x"}, None, None))
    assert reached == [("app", "/api/t/sales/v1/chat/completions"), ("guards", "/chat/login"), ("guards", "/apiary"),
                       ("guards", "/"), ("guards", "/api/x")]


def test_the_chat_guards_still_apply_to_the_chat():
    # A socket closed before it opened never reaches the app (ClosedSocketGuard).
    got, _, _ = _run({"type": "websocket", "path": "/chat/ws/socket.io/"}, [{"type": "websocket.disconnect"}])
    assert got == []
    # A wrong password's 401 is put in words (FriendlyLoginErrors), and only on the chat's sign-in.
    body = {"type": "http.request", "body": b"", "more_body": False}
    sent: list = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b'{"detail": "credentialssignin"}'})

    async def receive():
        return body

    async def send(message):
        sent.append(message)

    asyncio.run(ChatGuards(app)(_http("POST", "/chat/login"), receive, send))
    assert json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")) == \
        {"detail": MESSAGE}
    sent.clear()
    asyncio.run(ChatGuards(app)(_http("POST", "/api/chat/login"), receive, send))
    assert b"credentialssignin" in b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
