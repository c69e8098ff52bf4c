"""A websocket whose client left before its opening was read ends quietly; any other goes on unchanged."""

from __future__ import annotations

import asyncio

from ui.socket_guard import ClosedSocketGuard


def _run(first: dict, scope_type: str = "websocket", path: str = "/chat/ws/socket.io/") -> list:
    seen: list = []

    async def app(scope, receive, send):
        seen.append(await receive())
        seen.append(await receive())

    messages = [first, {"type": "websocket.receive", "text": "2probe"}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        raise AssertionError("nothing is sent")

    asyncio.run(ClosedSocketGuard(app)({"type": scope_type, "path": path}, receive, send))
    return seen


def test_a_socket_closed_before_it_opened_never_reaches_the_app():
    assert _run({"type": "websocket.disconnect", "code": 1001}) == []


def test_an_opening_socket_reaches_the_app_with_its_first_message_replayed():
    assert _run({"type": "websocket.connect"}) == [{"type": "websocket.connect"},
                                                   {"type": "websocket.receive", "text": "2probe"}]


def test_other_http_passes_through_untouched():
    assert _run({"type": "http.disconnect"}, scope_type="http", path="/chat/project/file")[0] == {
        "type": "http.disconnect"}  # not engineio's: the app itself sees the disconnect


def test_a_poll_whose_client_left_never_reaches_the_app_and_a_live_one_does():
    assert _run({"type": "http.disconnect"}, scope_type="http") == []
    assert _run({"type": "http.request", "body": b""}, scope_type="http")[0] == {"type": "http.request", "body": b""}


def test_real_engineio_fails_on_a_poll_whose_client_left_and_the_guard_lets_it_go():
    """python-engineio itself (the server Chainlit mounts): a long-polling GET whose first ASGI message is
    `http.disconnect` (the page left while the poll was in flight) raises KeyError 'REQUEST_METHOD' — an ERROR
    traceback in the served app's log (tests/browser/test_chat_quiet.py failed on it once under load)."""
    import pytest
    import socketio

    app = socketio.ASGIApp(socketio.AsyncServer(async_mode="asgi"), socketio_path="/chat/ws/socket.io")
    scope = {"type": "http", "method": "GET", "path": "/chat/ws/socket.io/", "raw_path": b"/chat/ws/socket.io/",
             "query_string": b"EIO=4&transport=polling", "headers": [], "scheme": "http", "http_version": "1.1",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "root_path": ""}
    sent: list = []

    async def left():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    with pytest.raises(KeyError, match="REQUEST_METHOD"):
        asyncio.run(app(dict(scope), left, send))
    asyncio.run(ClosedSocketGuard(app)(dict(scope), left, send))
    assert sent == []
