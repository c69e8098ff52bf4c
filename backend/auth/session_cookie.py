"""The browser session: Chainlit's signed cookie (CHAINLIT_AUTH_SECRET), read the same way by the API's
dependencies, the pages and the sign-out middleware; and cookies read from a raw ASGI scope."""

from __future__ import annotations

import time
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
    """Chainlit's user of a valid session cookie (its metadata holds the login's claims and provider), or None.
    A session older than ATRIUM_SESSION_HOURS (Chainlit's `user_session_timeout`, set at start) is over even if
    its own expiry is later: cookies issued before the lifetime was shortened end on time too."""
    import jwt
    from chainlit.auth import get_token_from_cookies
    from chainlit.auth.jwt import decode_jwt, get_jwt_secret
    from chainlit.config import config

    token = get_token_from_cookies(dict(cookies))
    if not token:
        return None
    try:
        issued = jwt.decode(token, get_jwt_secret(), algorithms=["HS256"]).get("iat")
        if not isinstance(issued, int | float) or time.time() - issued > config.project.user_session_timeout:
            return None
        return decode_jwt(token)
    except Exception:  # expired, tampered with, or signed by another secret
        return None
