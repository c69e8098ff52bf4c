"""Chainlit OAuth provider `oidc`: the company's OpenID provider (see backend/auth/oidc.py).

Chainlit's callback route calls get_token(code, url) then get_user_info(token); the login flow (state,
nonce, PKCE verifier) reaches them through backend.auth.oidc_web.current_flow. Failures are reported
to `on_failure` (the audit log) and re-raised, which sends the browser back to the login page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainlit.oauth_providers import OAuthProvider, providers
from chainlit.user import User

from backend.auth.oidc import LoginFlow, OidcLogin, OidcLoginError
from backend.auth.oidc_web import START_PATH, current_flow

PROVIDER_ID = "oidc"


class AtriumOidcProvider(OAuthProvider):
    id = PROVIDER_ID
    env: list[str] = []  # configured from Settings (env or .env), checked when the app is built

    def __init__(self, login: OidcLogin, on_failure: Callable[[OidcLoginError], None]) -> None:
        self.login = login
        self.on_failure = on_failure
        self.client_id = login.client_id
        self.client_secret = login.client_secret or ""
        # Only reached if the parent app's START_PATH route were missing; it then fails loudly.
        self.authorize_url = START_PATH + "/not-mounted"
        self.authorize_params: dict[str, str] = {}

    def is_configured(self) -> bool:
        return True

    def _flow(self) -> LoginFlow:
        flow = current_flow.get()
        if isinstance(flow, OidcLoginError):
            raise flow
        if flow is None:
            raise OidcLoginError("login_flow_missing", "the OIDC callback ran without its login context")
        return flow

    async def get_token(self, code: str, url: str) -> str:
        try:
            return await self.login.exchange(code, self._flow())
        except OidcLoginError as exc:
            self.on_failure(exc)
            raise

    async def get_user_info(self, token: str) -> tuple[dict[str, Any], User]:
        try:
            flow = self._flow()
            claims = await self.login.user_claims(token, flow.id_claims)
        except OidcLoginError as exc:
            self.on_failure(exc)
            raise
        sub = str(claims["sub"])
        user = User(identifier=sub, display_name=str(claims.get("name") or claims.get("preferred_username") or sub),
                    metadata={"provider": PROVIDER_ID})
        return claims, user


def register(login: OidcLogin, on_failure: Callable[[OidcLoginError], None]) -> AtriumOidcProvider:
    """Put the provider in Chainlit's list (replacing an earlier one: tests build several apps)."""
    provider = AtriumOidcProvider(login, on_failure)
    providers[:] = [p for p in providers if p.id != PROVIDER_ID] + [provider]
    return provider
