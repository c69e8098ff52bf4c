"""A socket the browser closed before the server read its opening is let go quietly. python-engineio reads the
first ASGI message of a websocket, or of a long-polling HTTP request, and when it is a disconnect rather than
`websocket.connect` / `http.request` (a page reloaded, left or signed out of while its socket was opening or its
poll was in flight — seen under load), builds an empty environ and fails on `REQUEST_METHOD`: an ERROR traceback in
the log for an ordinary reload. This pure-ASGI middleware reads that first message itself; a disconnect ends there,
anything else goes on to Chainlit with the message replayed. Other HTTP requests pass untouched."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SOCKET_PATH = "/socket.io"  # engineio's (Chainlit mounts it at /chat/ws/socket.io/): its long-polling requests


class ClosedSocketGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" and not (scope["type"] == "http" and SOCKET_PATH in scope["path"]):
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] in ("websocket.disconnect", "http.disconnect"):
            return  # nobody is there to answer
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)
