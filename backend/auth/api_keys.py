"""Tenant API keys: `atr_<id>_<secret>`, shown once, stored as a SHA-256 hash, revocable, scoped."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from backend.db.engine import Database
from backend.db.models import ApiKey, utcnow
from backend.db.repositories.api_keys import create_api_key, get_api_key

PREFIX = "atr_"
LAST_USED_RESOLUTION_S = 60
SCOPES = frozenset({"chat", "retrieval", "ingest", "prompts:read", "prompts:write", "admin"})


class InvalidApiKey(Exception):
    """Carries a machine-readable reason: malformed, unknown, revoked."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class IssuedKey:
    key: ApiKey
    token: str  # the only time the secret exists outside the caller's hands


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(raw: str | list[str]) -> list[str]:
    scopes = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if s.strip()]
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SCOPES))}")
    if not scopes:
        raise ValueError(f"give at least one scope from: {', '.join(sorted(SCOPES))}")
    return sorted(set(scopes))


def issue_key(*, db: Database, tenant: str, scopes: list[str], name: str = "",
              created_by: str | None = None) -> IssuedKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(id=key_id, tenant=tenant, name=name, key_hash=_hash(secret), scopes=parse_scopes(scopes),
                 created_by=created_by)
    with db.session() as session:
        row = create_api_key(session=session, key=row)
    return IssuedKey(key=row, token=f"{PREFIX}{key_id}_{secret}")


def verify_key(*, db: Database, token: str) -> ApiKey:
    if not token.startswith(PREFIX) or token.count("_") < 2:
        raise InvalidApiKey("malformed_api_key")
    key_id, _, secret = token[len(PREFIX):].partition("_")
    with db.session() as session:
        row = get_api_key(session=session, key_id=key_id)
        if row is None or not hmac.compare_digest(row.key_hash, _hash(secret)):
            raise InvalidApiKey("unknown_api_key")
        if row.revoked_at is not None:
            raise InvalidApiKey("revoked_api_key")
        now = utcnow()
        last = row.last_used_at
        if last is not None and last.tzinfo is None:  # SQLite returns naive datetimes
            last = last.replace(tzinfo=now.tzinfo)
        # A write (and fsync) per request would dominate the API's cost: last use is kept to the minute.
        if last is None or (now - last).total_seconds() >= LAST_USED_RESOLUTION_S:
            row.last_used_at = now
            session.add(row)
            session.commit()
            session.refresh(row)
        return row
