"""Which origins are this app's own: the one a request came to (its Host, in its scheme and in https) and
ATRIUM_PUBLIC_URL. The chat's socket and the browser's cookie-authenticated writes accept only these."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.types import Scope

_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_DEFAULT_PORT = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` in lower case with the default port dropped; None for anything else ("null")."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORT[scheme] else "")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def own_host(scope: Scope) -> str | None:
    """The Host the request came to, if it is a plain host[:port] (it is echoed into a header)."""
    host = header(scope, b"host")
    return host if host and _HOST.fullmatch(host) else None


def own_origins(scope: Scope, configured: frozenset[str] = frozenset()) -> set[str]:
    """`configured` (ATRIUM_PUBLIC_URL's origin), and the Host the request came to in its scheme and in https: a
    proxy that ends TLS and is not trusted with X-Forwarded-Proto passes plain http on (the same host over https is
    still us). A websocket's ws/wss scheme counts as http/https."""
    allowed = set(configured)
    host = own_host(scope)
    if host:
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
        allowed |= {origin_of(f"{scheme}://{host}"), origin_of(f"https://{host}")}
    return {o for o in allowed if o}
