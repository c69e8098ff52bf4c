"""Tenant API keys: `atr_<id>_<secret>`, shown once, stored as a SHA-256 hash, revocable, scoped."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.db.engine import Database
from backend.db.models import ApiKey, utcnow
from backend.db.repositories.api_keys import create_api_key, get_api_key

PREFIX = "atr_"
LAST_USED_RESOLUTION_S = 60
CACHE_MAX_KEYS = 10_000
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


@dataclass(frozen=True)
class VerifiedKey:
    """What a request needs of a verified key (no ORM object shared between threads)."""

    id: str
    tenant: str
    name: str
    scopes: frozenset[str]
    created_by: str | None = None  # the subject who created it (or "cli"): the key acts for them

    @classmethod
    def of(cls, row: ApiKey) -> VerifiedKey:
        return cls(id=row.id, tenant=row.tenant, name=row.name or "", scopes=frozenset(row.scopes),
                   created_by=row.created_by)


class KeyCache:
    """Keys verified in the last `ttl_s` seconds, so the API's hot path skips the SQL lookup (a thread hop and
    a query per request were a measurable share of bench/gateway's cost). Only successes are cached: unknown,
    revoked and malformed keys go to the database and the audit log every time. A revocation through this
    process's API applies at once (`forget`); one made elsewhere (CLI, another replica) within `ttl_s`.
    `ttl_s=0` turns the cache off. Entries are keyed by the token's digest, not the secret itself."""

    def __init__(self, *, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, VerifiedKey]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> VerifiedKey | None:
        if self.ttl_s <= 0:
            return None
        hit = self._entries.get(_hash(token))
        if hit is None:
            return None
        if hit[0] <= self._clock():
            with self._lock:
                self._entries.pop(_hash(token), None)
            return None
        return hit[1]

    def put(self, token: str, key: VerifiedKey) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= CACHE_MAX_KEYS:
                self._entries.clear()  # crude but bounded: a flood of distinct keys only costs lookups
            self._entries[_hash(token)] = (self._clock() + self.ttl_s, key)

    def forget(self, key_id: str) -> None:
        with self._lock:
            for digest in [d for d, (_, k) in self._entries.items() if k.id == key_id]:
                del self._entries[digest]

    def verify(self, *, db: Database, token: str) -> VerifiedKey:
        """The cached key, else `verify_key` (SQL; raises InvalidApiKey) and remember the success."""
        key = self.get(token)
        if key is None:
            key = VerifiedKey.of(verify_key(db=db, token=token))
            self.put(token, key)
        return key
