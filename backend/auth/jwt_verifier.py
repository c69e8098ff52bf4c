"""Bearer JWTs from the company IdP, verified with PyJWT against the JWKS named by OIDC discovery.

Keys are cached; an unknown `kid` triggers one refetch (rate-limited, so a flood of forged kids cannot
turn Atrium into a JWKS hammer), which is how key rotation at the IdP is picked up. Only asymmetric
algorithms are accepted, and the token's `alg` must fit the key type, so neither `none` nor an HS256
token "signed" with the public key can pass.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from backend.settings import Settings

log = logging.getLogger("atrium.auth")

ALLOWED_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
MAX_LEEWAY_S = 60


class TokenRejected(Exception):
    """Why a bearer token is refused: `reason` is a stable code (bad_signature, expired, ...)."""

    def __init__(self, reason: str, message: str, *, claimed_subject: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.claimed_subject = claimed_subject


class DiscoveryError(Exception):
    """The IdP's discovery document or JWKS could not be fetched or is not usable."""


class Discovery:
    """`{issuer}/.well-known/openid-configuration`, fetched once and cached (with its issuer checked)."""

    def __init__(self, issuer: str, *, http: Callable[[str], dict[str, Any]] | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self._get = http or _get_json
        self._doc: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def document(self) -> dict[str, Any]:
        with self._lock:
            if self._doc is None:
                doc = self._get(self.url)
                if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                    raise DiscoveryError(f"discovery at {self.url} names issuer {doc.get('issuer')!r}, "
                                         f"not OIDC_ISSUER {self.issuer!r}")
                for field in ("jwks_uri", "authorization_endpoint", "token_endpoint"):
                    if not doc.get(field):
                        raise DiscoveryError(f"discovery at {self.url} has no {field}")
                self._doc = doc
            return self._doc

    def get(self, field: str) -> Any:
        return self.document().get(field)


def _get_json(url: str) -> dict[str, Any]:
    try:
        r = httpx.get(url, timeout=10, follow_redirects=False)
        r.raise_for_status()
        return r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DiscoveryError(f"cannot fetch {url}: {exc}") from exc


class JwksCache:
    """The IdP's signing keys by kid; refetched on an unknown kid at most once per `min_refresh_s`."""

    def __init__(self, jwks_uri: Callable[[], str], *, min_refresh_s: float = 10.0, max_age_s: float = 3600.0,
                 http: Callable[[str], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._jwks_uri = jwks_uri
        self._get = http or _get_json
        self.min_refresh_s = min_refresh_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._algs: dict[str, str] = {}  # kid -> the `alg` the JWKS pins for it, when it does
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        raw = self._get(self._jwks_uri())
        keys: dict[str, jwt.PyJWK] = {}
        algs: dict[str, str] = {}
        for entry in raw.get("keys") or []:
            if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC", "OKP"):
                continue
            try:
                keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
                if entry.get("alg"):
                    algs[str(entry.get("kid", ""))] = str(entry["alg"])
            except jwt.PyJWKError as exc:  # one odd key must not take the others down
                log.warning("skipping unusable JWKS key", extra={"kid": entry.get("kid"), "error": str(exc)})
        self._keys, self._algs = keys, algs
        self._fetched_at = self._clock()

    def get(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self.max_age_s
            if stale:
                self._fetch()
            elif kid not in self._keys and now - (self._fetched_at or 0) >= self.min_refresh_s:
                self._fetch()  # rotation: the IdP may have published a new key
            return self._keys.get(kid)

    def declared_alg(self, kid: str) -> str | None:
        return self._algs.get(kid)


class JwtVerifier:
    def __init__(self, *, issuer: str, audience: str, jwks: JwksCache, leeway_s: int = 30) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks = jwks
        self.leeway_s = min(max(0, leeway_s), MAX_LEEWAY_S)

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims, or TokenRejected naming why not."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.DecodeError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise TokenRejected("malformed_token",
                                f"the bearer token is not a well-formed JWT: {exc}") from exc
        claimed = unverified.get("sub") if isinstance(unverified.get("sub"), str) else None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise TokenRejected("disallowed_algorithm", f"token algorithm {alg!r} is not accepted; "
                                f"allowed: {', '.join(ALLOWED_ALGORITHMS)}", claimed_subject=claimed)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("unknown_kid", "the token header names no key id (kid)",
                                claimed_subject=claimed)
        try:
            key = self.jwks.get(kid)
        except DiscoveryError as exc:
            raise TokenRejected("idp_unavailable", f"cannot fetch the identity provider's keys: {exc}",
                                claimed_subject=claimed) from exc
        if key is None:
            raise TokenRejected("unknown_kid", f"no signing key {kid!r} at the identity provider",
                                claimed_subject=claimed)
        jwk_alg = self.jwks.declared_alg(kid)
        if _KEY_TYPES.get(alg[:2]) != key.key_type or (jwk_alg is not None and jwk_alg != alg):
            raise TokenRejected("bad_signature", f"algorithm {alg} does not fit key {kid!r} ({key.key_type})",
                                claimed_subject=claimed)
        try:
            return jwt.decode(
                token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway_s, options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("expired", "the token has expired", claimed_subject=claimed) from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenRejected("not_yet_valid", "the token is not valid yet (nbf/iat in the future)",
                                claimed_subject=claimed) from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected("wrong_audience", f"the token is not for this API (aud must be "
                                f"{self.audience!r})", claimed_subject=claimed) from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected("wrong_issuer", f"the token was not issued by {self.issuer!r}",
                                claimed_subject=claimed) from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("bad_signature", "the token signature does not verify",
                                claimed_subject=claimed) from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("malformed_token", f"the token lacks the {exc.claim!r} claim",
                                claimed_subject=claimed) from exc
        except jwt.InvalidTokenError as exc:
            raise TokenRejected("malformed_token", f"the token is not valid: {exc}",
                                claimed_subject=claimed) from exc



def build_jwt_verifier(settings: Settings) -> JwtVerifier | None:
    """From settings; no network until the first token arrives."""
    if not (settings.oidc_issuer and settings.oidc_api_audience):
        return None
    discovery = Discovery(settings.oidc_issuer)
    jwks = JwksCache(lambda: str(discovery.get("jwks_uri")), min_refresh_s=settings.oidc_jwks_min_refresh_s)
    return JwtVerifier(issuer=settings.oidc_issuer, audience=settings.oidc_api_audience, jwks=jwks,
                       leeway_s=settings.oidc_leeway_s)
