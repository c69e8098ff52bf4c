"""Browser login through the company's OpenID provider: authorization code flow with PKCE, state and
nonce (authlib), the ID token verified against the provider's JWKS, claims merged with userinfo.

Framework-free: the HTTP glue lives in backend/auth/oidc_web.py (start + callback context) and
ui/oidc_provider.py (the Chainlit OAuth provider). Between the two legs of the flow, `state`, `nonce`
and the PKCE verifier travel in a short-lived encrypted cookie (Fernet), so any replica can finish a
login another one started.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from cryptography.fernet import Fernet, InvalidToken

from backend.auth.guard import AuditSink
from backend.auth.jwt_verifier import Discovery, DiscoveryError, JwksCache, JwtVerifier, TokenRejected
from backend.settings import Settings

log = logging.getLogger("atrium.auth")

CALLBACK_PATH = "/chat/auth/oauth/oidc/callback"
FLOW_COOKIE = "atrium_oidc_flow"
FLOW_TTL_S = 600
# Where a login started from a page other than the chat may land afterwards: our own pages only, never a URL
# (an open redirect would turn our login into a phishing hop).
_RETURN_TO = re.compile(r"/(studio|admin)(\?[A-Za-z0-9_=&%.-]{0,200})?")
# Protocol bookkeeping that has no business in the session cookie.
_DROP_CLAIMS = {"nonce", "at_hash", "c_hash", "s_hash", "sid", "auth_time", "azp", "aud", "exp", "iat", "nbf",
                "jti", "acr", "amr"}


class OidcLoginError(Exception):
    """A login that must not succeed; `reason` is a stable code for the audit log."""

    def __init__(self, reason: str, message: str, *, subject: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.subject = subject

    def record(self, audit: AuditSink, *, ip: str | None) -> object:
        """This refused login as a denial like any other, through the audit sink (governance's AuditLog)."""
        return audit.record("denied", subject=self.subject, route=CALLBACK_PATH, ip=ip, status=401,
                            reason=self.reason, detail={"method": "oidc", "message": self.message})


def safe_return_to(path: str | None) -> str | None:
    """`path` if it is one of our sign-in-protected pages (the studio, the operator page), else None."""
    return path if path and _RETURN_TO.fullmatch(path) else None


@dataclass
class LoginFlow:
    """One login in progress: what the callback must check and send back to the provider."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    return_to: str | None = None  # a page of ours to land on instead of the chat (see `safe_return_to`)
    # Filled during the callback: the verified ID token's claims, then merged with userinfo.
    id_claims: dict[str, Any] = field(default_factory=dict)

    def seal(self, fernet: Fernet) -> str:
        data = {"s": self.state, "n": self.nonce, "v": self.code_verifier, "r": self.redirect_uri, "t": self.return_to}
        return fernet.encrypt(json.dumps(data).encode()).decode()

    @classmethod
    def unseal(cls, token: str, fernet: Fernet) -> LoginFlow:
        try:
            data = json.loads(fernet.decrypt(token.encode(), ttl=FLOW_TTL_S))
        except (InvalidToken, ValueError) as exc:
            raise OidcLoginError("login_flow_invalid", "the login took too long or its cookie was tampered "
                                 "with; start again") from exc
        return cls(state=data["s"], nonce=data["n"], code_verifier=data["v"], redirect_uri=data["r"],
                   return_to=data.get("t"))


class OidcLogin:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str | None, scopes: str, secret: str,
                 public_url: str | None = None, leeway_s: int = 30, jwks_min_refresh_s: float = 10.0,
                 discovery: Discovery | None = None, jwks: JwksCache | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = " ".join(dict.fromkeys(["openid", *scopes.split()]))  # openid first, no duplicates
        self.public_url = public_url.rstrip("/") if public_url else None
        self.discovery = discovery or Discovery(self.issuer)
        self.jwks = jwks or JwksCache(lambda: str(self.discovery.get("jwks_uri")), min_refresh_s=jwks_min_refresh_s)
        self.id_tokens = JwtVerifier(issuer=self.issuer, audience=client_id, jwks=self.jwks, leeway_s=leeway_s)
        key = base64.urlsafe_b64encode(hashlib.sha256(b"atrium-oidc-flow\0" + secret.encode()).digest())
        self.fernet = Fernet(key)

    @classmethod
    def from_settings(cls, settings: Settings, *, secret: str) -> OidcLogin | None:
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_client_id:
            # API-only: bearer JWTs are verified, but nobody can log in to the browser UI through the IdP.
            log.warning("OIDC_ISSUER is set without OIDC_CLIENT_ID: browser login through the identity "
                        "provider is off (register a client for Atrium and set OIDC_CLIENT_ID/OIDC_CLIENT_SECRET)")
            return None
        return cls(issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
                   client_secret=settings.oidc_client_secret, scopes=settings.oidc_scopes, secret=secret,
                   public_url=settings.public_url, leeway_s=settings.oidc_leeway_s,
                   jwks_min_refresh_s=settings.oidc_jwks_min_refresh_s)

    def redirect_uri(self, request_base: str) -> str:
        """ATRIUM_PUBLIC_URL wins (behind proxies the request URL may be internal)."""
        return (self.public_url or request_base.rstrip("/")) + CALLBACK_PATH

    def _client(self) -> AsyncOAuth2Client:
        methods = self.discovery.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if not self.client_secret:
            method = "none"  # a public client: PKCE is its only proof
        else:
            method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        return AsyncOAuth2Client(client_id=self.client_id, client_secret=self.client_secret, scope=self.scopes,
                                 token_endpoint_auth_method=method, code_challenge_method="S256",
                                 timeout=15)

    def start(self, request_base: str, *, return_to: str | None = None) -> tuple[str, LoginFlow]:
        """The provider's authorization URL and the flow to remember (blocking: may fetch discovery)."""
        flow = LoginFlow(state=generate_token(43), nonce=generate_token(43), code_verifier=generate_token(64),
                         redirect_uri=self.redirect_uri(request_base), return_to=safe_return_to(return_to))
        endpoint = str(self.discovery.get("authorization_endpoint"))
        url, _ = self._client().create_authorization_url(
            endpoint, state=flow.state, code_verifier=flow.code_verifier, nonce=flow.nonce,
            redirect_uri=flow.redirect_uri, response_type="code")
        return url, flow

    async def exchange(self, code: str, flow: LoginFlow) -> str:
        """Code -> tokens (client auth + PKCE verifier); verifies the ID token; returns the access token."""
        try:
            endpoint = str(await asyncio.to_thread(self.discovery.get, "token_endpoint"))
            async with self._client() as client:
                token = await client.fetch_token(endpoint, grant_type="authorization_code", code=code,
                                                 redirect_uri=flow.redirect_uri, code_verifier=flow.code_verifier)
        except DiscoveryError as exc:
            raise OidcLoginError("idp_unavailable", str(exc)) from exc
        except Exception as exc:  # authlib raises OAuthError; httpx its own: both mean "the exchange failed"
            raise OidcLoginError("code_exchange_failed", f"{type(exc).__name__}: {exc}") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise OidcLoginError("missing_id_token", "the provider returned no ID token (is `openid` allowed?)")
        flow.id_claims = await asyncio.to_thread(self.verify_id_token, str(id_token), flow.nonce)
        access_token = token.get("access_token")
        return str(access_token or "")

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            claims = self.id_tokens.verify(id_token)
        except TokenRejected as exc:
            raise OidcLoginError(f"id_token_{exc.reason}", exc.message, subject=exc.claimed_subject) from exc
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcLoginError("id_token_bad_nonce", "the ID token's nonce is not the one this login sent",
                                 subject=claims.get("sub"))
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise OidcLoginError("id_token_wrong_audience", "the ID token was issued to another client (azp)",
                                 subject=claims.get("sub"))
        return claims

    async def user_claims(self, access_token: str, id_claims: dict[str, Any]) -> dict[str, Any]:
        """Verified ID token claims merged with userinfo (the ID token wins where both speak)."""
        userinfo: dict[str, Any] = {}
        endpoint = await asyncio.to_thread(self.discovery.get, "userinfo_endpoint")
        if endpoint and access_token:
            try:
                async with httpx.AsyncClient(timeout=15) as http:
                    r = await http.get(str(endpoint), headers={"Authorization": f"Bearer {access_token}"})
                    r.raise_for_status()
                    userinfo = r.json()
            except (httpx.HTTPError, ValueError) as exc:
                # The ID token alone is enough to log in; say so, since groups may live only in userinfo.
                log.warning("userinfo request failed; using the ID token claims only", extra={"error": str(exc)})
        if userinfo and userinfo.get("sub") != id_claims.get("sub"):
            raise OidcLoginError("userinfo_subject_mismatch", "userinfo describes another user than the ID token",
                                 subject=id_claims.get("sub"))
        merged = {**userinfo, **id_claims}
        return {k: v for k, v in merged.items() if k not in _DROP_CLAIMS}
