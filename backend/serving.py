"""How `atrium serve` runs uvicorn: a cap on each request's head and trailers, a deadline for a head to arrive,
and which peers may say who the client is (X-Forwarded-For).

uvicorn's httptools protocol puts no limit on a request's head, and httptools joins a header's pieces by bytes
concatenation (quadratic): one unauthenticated 64 MB header held the event loop for seconds, every tenant
waiting. The subclass below counts the bytes of each request's head as they arrive and answers 431 once they
pass the limit, before the parser has seen more than that. A chunked body's trailers are header fields parsed the
same way after the body, so they count against the same limit; they are then dropped (RFC 9110 6.5.1): uvicorn
would append them to the request's headers, where an `Authorization` sent after the body would count.

Nor does uvicorn time a request's head: a connection that sent nothing, or one header line every few seconds,
stayed open for minutes (slowloris). The head must now be complete within `head_timeout_s` of the connection's
start or of the end of the previous response; uvicorn's keep-alive timeout still closes an idle connection
sooner after a response.
"""

from __future__ import annotations

import json
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadLimitedProtocol(HttpToolsProtocol):
    """httptools, with the request line + headers of each request (and a chunked body's trailers) capped at
    `max_head_bytes`, and the head due within `head_timeout_s`."""

    max_head_bytes = 64 * 1024
    head_timeout_s: float | None = 30.0
    setting = "ATRIUM_MAX_HEADER_KB"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts with a request's head
        self._head_bytes = 0
        self._chunked = False
        # Bytes of a chunked body that were not body since its last chunk ended or its last body bytes came: a
        # chunk's size line, or the trailers. httptools tells no positions, so it is counted per feed and may
        # over-count by what preceded the last event of a feed (which the feed size bounds).
        self._tail = 0
        self._fed_body = 0
        self._fed_event = False
        self._upgraded = False
        self._head_timer: TimerHandle | None = None

    # -- the connection ------------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head is due from here, unless a pipelined request (its head already in) is being served now.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._start_head_clock()

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True  # the websocket protocol reads this connection from now on
        super().handle_websocket_upgrade()

    # -- bytes in ------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        while data:
            if self.parser is None or self._upgraded or self.transport.is_closing():
                return
            if self._in_head:
                room = self.max_head_bytes - self._head_bytes
            elif self._chunked:
                room = self.max_head_bytes - self._tail
            else:  # a body of declared length: backend/api/limits.py counts it
                super().data_received(data)
                return
            if room <= 0:
                self._refuse()
                return
            # Only what fits goes to the parser: if the head (or the trailers) end within it, the rest follows
            # as usual; if not, the next round refuses it.
            piece, data = data[:room], data[room:]
            in_head = self._in_head
            if in_head:
                self._head_bytes += len(piece)
            self._fed_body, self._fed_event = 0, False
            super().data_received(piece)
            if self._chunked and not self._in_head:  # in a chunked body after this piece
                if self._fed_event:
                    self._tail = len(piece) - self._fed_body
                else:  # a head that ended in this piece shares its limit with what follows it: a size line, trailers
                    self._tail = self._head_bytes if in_head else self._tail + len(piece)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # not a trailer
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_clock()
        self._chunked = any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self.headers)
        self._tail = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._fed_body += len(body)
        self._fed_event = True
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._fed_event = True

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes, self._chunked, self._tail = True, 0, False, 0  # the next request's head
        super().on_message_complete()

    # -- refusals ------------------------------------------------------------------------------------------

    def _refuse(self) -> None:
        """The head or the trailers passed the limit: a 431, or only the end of the connection when this
        connection's response is already under way or sent (a 431 would then be read as the rest of that response,
        or answer a request already answered)."""
        cycle = self.cycle
        if cycle is not None and cycle.response_started and (not cycle.response_complete or not self._in_head):
            self.logger.warning("request head or trailers over %d KiB: connection closed", self.max_head_bytes // 1024)
            self.transport.close()
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the handler waiting for this body gets http.disconnect, its reply dropped
            cycle.message_event.set()
        self._send_431()

    def _send_431(self) -> None:
        limit_kb = self.max_head_bytes // 1024
        self.logger.warning("request head over %d KiB refused", limit_kb)
        body = json.dumps({"error": "headers_too_large",
                           "detail": f"the request line and headers (or trailers) are larger than {limit_kb} KiB; "
                                     f"send fewer or shorter headers (cookies, tokens), or ask the operator to "
                                     f"raise {self.setting}"}).encode()
        self.transport.write(b"".join([
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n", body]))
        self.transport.close()

    # -- the head's deadline -------------------------------------------------------------------------------

    def _start_head_clock(self) -> None:
        self._stop_head_clock()
        if self.head_timeout_s:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_overdue)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            # No reply: the client may not have sent a byte, and a slowloris client would not read one.
            self.logger.info("no complete request head within %gs (ATRIUM_HEADER_TIMEOUT_S): connection closed",
                             self.head_timeout_s)
            self.transport.close()


def head_limited_protocol(max_head_bytes: int, head_timeout_s: float | None = 30.0) -> type[HttpToolsProtocol]:
    """uvicorn builds one protocol object per connection from a class: the limits travel as class attributes."""
    return type("HeadLimitedProtocol", (HeadLimitedProtocol,),
                {"max_head_bytes": max_head_bytes, "head_timeout_s": head_timeout_s})


def proxy_options(trusted_proxies: list[str]) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-For/-Proto: honoured only from the listed addresses; none listed, the
    headers are ignored and the client is the peer of the TCP connection."""
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted_proxies)}
