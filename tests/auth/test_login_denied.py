"""A refused OIDC login is recorded by the auth side through the audit sink (governance does not know OIDC)."""

from __future__ import annotations

from typing import Any

from backend.auth.oidc import CALLBACK_PATH, OidcLoginError


def test_a_refused_login_is_a_denial_on_the_callback():
    seen: list[tuple[str, dict[str, Any]]] = []

    class Sink:
        def record(self, kind: str, **fields: Any) -> object:
            seen.append((kind, fields))
            return None

    OidcLoginError("id_token_bad_nonce", "wrong nonce", subject="eve").record(Sink(), ip="10.9.9.9")
    assert seen == [("denied", {"subject": "eve", "route": CALLBACK_PATH, "ip": "10.9.9.9", "status": 401,
                                "reason": "id_token_bad_nonce", "detail": {"method": "oidc",
                                                                           "message": "wrong nonce"}})]
