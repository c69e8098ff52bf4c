"""A websocket whose client left before its opening was read ends quietly; any other goes on unchanged."""

from __future__ import annotations

import asyncio

from ui.socket_guard import ClosedSocketGuard


def _run(first: dict, scope_type: str = "websocket") -> list:
    seen: list = []

    async def app(scope, receive, send):
        seen.append(await receive())
        seen.append(await receive())

    messages = [first, {"type": "websocket.receive", "text": "2probe"}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        raise AssertionError("nothing is sent")

    asyncio.run(ClosedSocketGuard(app)({"type": scope_type, "path": "/chat/ws/socket.io/"}, receive, send))
    return seen


def test_a_socket_closed_before_it_opened_never_reaches_the_app():
    assert _run({"type": "websocket.disconnect", "code": 1001}) == []


def test_an_opening_socket_reaches_the_app_with_its_first_message_replayed():
    assert _run({"type": "websocket.connect"}) == [{"type": "websocket.connect"},
                                                   {"type": "websocket.receive", "text": "2probe"}]


def test_http_passes_through_untouched():
    assert _run({"type": "http.request", "body": b""}, scope_type="http")[0] == {"type": "http.request", "body": b""}
