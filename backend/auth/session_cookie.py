"""The browser session: Chainlit's signed cookie (CHAINLIT_AUTH_SECRET), verified the same way (backend.auth.sessions)
by the API's dependencies, the pages and the sign-out middleware; and cookies read from a raw ASGI scope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import Scope

from backend.auth.sessions import SessionRegistry


def scope_cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies, for pure-ASGI middleware: parsed exactly as Starlette parses `request.cookies` (the
    routes' authentication), so a middleware's check never sees other cookies than the route behind it (a strict
    parser gave up on a junk cookie and missed the session cookie the route then used)."""
    from starlette.requests import cookie_parser

    header = b"; ".join(value for name, value in scope.get("headers", []) if name == b"cookie")
    return cookie_parser(header.decode("latin-1")) if header else {}


def session_token(cookies: Mapping[str, str]) -> str | None:
    """The session token of Chainlit's cookie (which it splits into chunks when long)."""
    from chainlit.auth import get_token_from_cookies

    return get_token_from_cookies(dict(cookies))


def session_user(cookies: Mapping[str, str], sessions: SessionRegistry) -> Any | None:
    """Chainlit's user of a valid session cookie (its metadata holds the login's claims and provider), or None.
    Valid means what `SessionRegistry.verify` says: signed by us, within ATRIUM_SESSION_HOURS of its sign-in
    (however often it was re-issued), not signed out, not ended by an admin."""
    from chainlit.user import User

    check = sessions.verify(session_token(cookies))
    if check.payload is None:
        return None
    return User(**{k: v for k, v in check.payload.items() if k not in ("exp", "iat")})
