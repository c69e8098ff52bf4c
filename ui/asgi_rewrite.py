"""Rewriting a response of Chainlit's from the outside (pure ASGI: no buffering of responses left alone)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]


async def rewrite_response(app: ASGIApp, scope: Scope, receive: Receive, send: Send, *,
                           wanted: Callable[[Message], bool],
                           rewrite: Callable[[Headers, bytes], tuple[Headers, bytes]]) -> None:
    """Run `app`; a response whose start message is `wanted` is held whole and sent as `rewrite(headers, body)`
    returns it (Content-Length recomputed)."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            if not wanted(message):
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
        headers, body = rewrite(list(start.get("headers", [])), b"".join(chunks))
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    await app(scope, receive, wrapped)
