"""The browser session: Chainlit's signed cookie (CHAINLIT_AUTH_SECRET), read the same way by the API's
dependencies, the pages and the sign-out middleware; and cookies read from a raw ASGI scope."""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

from starlette.types import Scope


def scope_cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies, for pure-ASGI middleware (a malformed Cookie header counts as no cookie)."""
    jar = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                pass
    return {k: m.value for k, m in jar.items()}


def session_user(cookies: Mapping[str, str]) -> Any | None:
    """Chainlit's user of a valid session cookie (its metadata holds the login's claims and provider), or None."""
    from chainlit.auth import get_token_from_cookies
    from chainlit.auth.jwt import decode_jwt

    token = get_token_from_cookies(dict(cookies))
    if not token:
        return None
    try:
        return decode_jwt(token)
    except Exception:  # expired, tampered with, or signed by another secret
        return None
