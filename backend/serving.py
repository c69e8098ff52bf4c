"""How `atrium serve` runs uvicorn: a cap on the request line and headers, and which peers may say who the
client is (X-Forwarded-For).

uvicorn's httptools protocol puts no limit on a request's head, and httptools joins a header's pieces by bytes
concatenation (quadratic): one unauthenticated 64 MB header held the event loop for seconds, every tenant
waiting. The subclass below counts the bytes of each request's head as they arrive and answers 431 once they
pass the limit, before the parser has seen more than that.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadLimitedProtocol(HttpToolsProtocol):
    """httptools, with the request line + headers of each request capped at `max_head_bytes`."""

    max_head_bytes = 64 * 1024
    setting = "ATRIUM_MAX_HEADER_KB"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts with a request's head
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Only what fits goes to the parser: if the head ends within it, the rest (the body, or the next
        # pipelined request) follows as usual; if not, the head is too large.
        self._head_bytes = self.max_head_bytes
        if room > 0:
            super().data_received(data[:room])
        if self._in_head:
            if not self.transport.is_closing():
                self._send_431()
            return
        self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0  # what follows is the next request's head
        super().on_message_complete()

    def _send_431(self) -> None:
        limit_kb = self.max_head_bytes // 1024
        self.logger.warning("request head over %d KiB refused", limit_kb)
        body = json.dumps({"error": "headers_too_large",
                           "detail": f"the request line and headers are larger than {limit_kb} KiB; send fewer or "
                                     f"shorter headers (cookies, tokens), or ask the operator to raise "
                                     f"{self.setting}"}).encode()
        self.transport.write(b"".join([
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n", body]))
        self.transport.close()


def head_limited_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn builds one protocol object per connection from a class: the limit travels as a class attribute."""
    return type("HeadLimitedProtocol", (HeadLimitedProtocol,), {"max_head_bytes": max_head_bytes})


def proxy_options(trusted_proxies: list[str]) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-For/-Proto: honoured only from the listed addresses; none listed, the
    headers are ignored and the client is the peer of the TCP connection."""
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted_proxies)}

