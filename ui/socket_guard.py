"""A socket the browser closed before the server read its opening is let go quietly. python-engineio reads the
first ASGI message of a websocket and, when it is `websocket.disconnect` rather than `websocket.connect` (a page
reloaded or left while its socket was opening — seen under load), builds an empty environ and fails on
`REQUEST_METHOD`: an ERROR traceback in the log for an ordinary reload. This pure-ASGI middleware reads that first
message itself; a disconnect ends there, anything else goes on to Chainlit with the message replayed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ClosedSocketGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] == "websocket.disconnect":
            return  # nobody is there to answer
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)
