"""Tenant API keys: `atr_<id>_<secret>`, shown once, stored as a SHA-256 hash, revocable, scoped, expiring.

A key made by a key belongs to the same person (`owner`, the root of the chain): it acts for them, the four-eyes
rule counts them, it never outlives its parent, and revoking a key revokes every key made through it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError

from backend.auth.principal import (
    CLI_OWNER,  # noqa: F401 - re-exported: one definition of "no person"
    AllowanceBasis,
)
from backend.db.engine import Database
from backend.db.models import ApiKey, utcnow
from backend.db.repositories.api_keys import create_api_key, get_api_key, revoke_api_key

PREFIX = "atr_"
KEY_SUBJECT = "key:"  # a key's subject (and `created_by` of a key it made) is "key:<id>"
LAST_USED_RESOLUTION_S = 60
CACHE_MAX_KEYS = 10_000
MAX_EXPIRY_DAYS = 3650
MAX_CHAIN = 64  # keys made through keys: far deeper than any real use, a bound on the ancestor walk
SCOPES = frozenset({"chat", "retrieval", "ingest", "prompts:read", "prompts:write", "admin"})


class InvalidApiKey(Exception):
    """Carries a machine-readable reason: malformed, unknown, revoked, expired (`<reason>_api_key`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExpiryBeyondParent(ValueError):
    """A key made by a key asked to live longer than the key that makes it."""

    def __init__(self, parent_id: str, parent_expires_at: datetime) -> None:
        days = (parent_expires_at - utcnow()).days
        # 0 days is "no expiry", which a key that expires cannot give: under a day left, only leaving it out works.
        ask = f"ask for 1 to {days} day(s), or leave" if days >= 1 else "leave"
        super().__init__(f"a key made with API key {parent_id} cannot outlive it: that key expires on "
                         f"{parent_expires_at:%Y-%m-%d %H:%M} UTC; {ask} expires_in_days out to get that key's "
                         "expiry")
        self.parent_expires_at = parent_expires_at


def aware(at: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@dataclass(frozen=True)
class KeyInfo:
    """A key as its admins see it (never its hash): plain data, no ORM row outside the repository's session."""

    id: str
    tenant: str
    name: str
    scopes: list[str]
    created_by: str | None  # a subject, "cli", or "key:<id>" for a key made by a key
    owner: str | None  # the person at the root of its chain: the key acts for them
    parent_key_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(id=row.id, tenant=row.tenant, name=row.name, scopes=list(row.scopes), created_by=row.created_by,
                   owner=row.owner, parent_key_id=row.parent_key_id, created_at=row.created_at,
                   expires_at=row.expires_at, revoked_at=row.revoked_at, last_used_at=row.last_used_at)


@dataclass(frozen=True)
class IssuedKey:
    key: KeyInfo
    token: str  # the only time the secret exists outside the caller's hands


@dataclass(frozen=True)
class Revoked:
    key: KeyInfo  # as it is now (revoked_at: the first revocation's time)
    revoked_now: bool  # False: the key had been revoked before (revoking is idempotent)
    descendants_revoked: list[str]  # keys made through it that this call revoked, nearest first


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
              created_by: str | None = None, parent_key_id: str | None = None,
              expires_in_days: int | None = None, default_days: int = 0) -> IssuedKey:
    """`created_by` is the person (their subject), "cli", or for a key made by a key "key:<parent id>" with
    `parent_key_id`. `expires_in_days`: None takes `default_days` (0 = no expiry) clamped to the parent's expiry;
    0 asks for no expiry (the CLI's and the API's); a number past the parent's expiry, or 0 under a parent that
    expires, is refused (ExpiryBeyondParent), so nobody gets a shorter key than they asked for without being told."""
    if expires_in_days is not None and not 0 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"a key's expiry must be 1 to {MAX_EXPIRY_DAYS} days (0: no expiry)")
    days = default_days if expires_in_days is None else expires_in_days
    now = utcnow()
    expires_at = now + timedelta(days=days) if days else None
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with db.session() as session:
        owner = created_by
        if parent_key_id is not None:
            parent = get_api_key(session=session, key_id=parent_key_id)
            if parent is None or parent.tenant != tenant or parent.revoked_at is not None:
                raise InvalidApiKey("revoked_api_key")  # revoked while this request ran
            owner = parent.owner
            parent_expiry = aware(parent.expires_at)
            if parent_expiry is not None:
                if parent_expiry <= now:
                    raise InvalidApiKey("expired_api_key")
                if expires_in_days is not None and (expires_at is None or expires_at > parent_expiry):
                    raise ExpiryBeyondParent(parent_key_id, parent_expiry)
                expires_at = parent_expiry if expires_at is None else min(expires_at, parent_expiry)
        row = ApiKey(id=key_id, tenant=tenant, name=name, key_hash=_hash(secret), scopes=parse_scopes(scopes),
                     created_by=created_by, owner=owner, parent_key_id=parent_key_id, expires_at=expires_at)
        row = create_api_key(session=session, key=row)
    return IssuedKey(key=KeyInfo.of(row), token=f"{PREFIX}{key_id}_{secret}")


def _refusal(row: ApiKey, now: datetime) -> str | None:
    if row.revoked_at is not None:
        return "revoked_api_key"
    expires_at = aware(row.expires_at)
    if expires_at is not None and expires_at <= now:
        return "expired_api_key"
    return None


def verify_key(*, db: Database, token: str) -> ApiKey:
    if not token.startswith(PREFIX) or token.count("_") < 2:
        raise InvalidApiKey("malformed_api_key")
    key_id, _, secret = token[len(PREFIX):].partition("_")
    try:
        return _verify(db=db, key_id=key_id, secret=secret)
    except DBAPIError as exc:
        # The server dropped the connection under the query, after the pool's ping had found it alive (a restart,
        # a failover, an idle-connection reaper): the caller got a 500 for a good key. Reading the key and stamping
        # its last use are safe to do again, on a new connection — once.
        if not exc.connection_invalidated:
            raise
        return _verify(db=db, key_id=key_id, secret=secret)


def _verify(*, db: Database, key_id: str, secret: str) -> ApiKey:
    with db.session() as session:
        row = get_api_key(session=session, key_id=key_id)
        if row is None or not hmac.compare_digest(row.key_hash, _hash(secret)):
            raise InvalidApiKey("unknown_api_key")
        now = utcnow()
        if (reason := _refusal(row, now)) is not None:
            raise InvalidApiKey(reason)
        # Revoking a key revokes its descendants in the same transaction; the walk also covers a child
        # inserted while its parent was being revoked.
        ancestor, depth = row.parent_key_id, 0
        while ancestor is not None and depth < MAX_CHAIN:
            parent = get_api_key(session=session, key_id=ancestor)
            if parent is None:
                break
            if (reason := _refusal(parent, now)) is not None:
                raise InvalidApiKey(reason)
            ancestor, depth = parent.parent_key_id, depth + 1
        last = aware(row.last_used_at)
        # A write (and fsync) per request would dominate the API's cost: last use is kept to the minute.
        if last is None or (now - last).total_seconds() >= LAST_USED_RESOLUTION_S:
            row.last_used_at = now
            session.add(row)
            session.commit()
            session.refresh(row)
        return row


def revoke_key_lineage(*, db: Database, tenant: str, key_id: str, cache: KeyCache | None = None) -> Revoked | None:
    """Revoke a key and every key made through it (one transaction); this process's cache forgets them all at
    once (other replicas within their cache time). None when the tenant has no such key."""
    with db.session() as session:
        revocation = revoke_api_key(session=session, tenant=tenant, key_id=key_id)
    if revocation is None:
        return None
    if cache is not None:
        cache.forget(*revocation.lineage)
    return Revoked(key=KeyInfo.of(revocation.key), revoked_now=revocation.revoked_now,
                   descendants_revoked=revocation.descendants_revoked)


def people_behind(*, db: Database, names: Iterable[str]) -> frozenset[str]:
    """`names` plus, for each "key:<id>" among them, the person who owns that key: a version recorded as
    written by a key (before keys recorded their owner in `author_for`, or by a key of a key) is its owner's."""
    people = {n for n in names if n}
    key_ids = [n[len(KEY_SUBJECT):] for n in people if n.startswith(KEY_SUBJECT)]
    if key_ids:
        with db.session() as session:
            for key_id in key_ids:
                row = get_api_key(session=session, key_id=key_id)
                if row is not None and row.owner:
                    people.add(row.owner)
    return frozenset(people)


@dataclass(frozen=True)
class VerifiedKey:
    """What a request needs of a verified key (no ORM object shared between threads)."""

    id: str
    tenant: str
    name: str
    scopes: frozenset[str]
    created_by: str | None = None  # a subject, "cli", or "key:<id>"
    owner: str | None = None  # the person at the root of its chain: the key acts for them
    expires_at: datetime | None = None
    owner_basis: AllowanceBasis | None = None  # the owner's roles and claim groups here (auth/key_owners.py)

    @classmethod
    def of(cls, row: ApiKey) -> VerifiedKey:
        return cls(id=row.id, tenant=row.tenant, name=row.name or "", scopes=frozenset(row.scopes),
                   created_by=row.created_by, owner=row.owner, expires_at=aware(row.expires_at))


class KeyCache:
    """Keys verified in the last `ttl_s` seconds, so the API's hot path skips the SQL lookup (a thread hop and
    a query per request were a measurable share of bench/gateway's cost). Only successes are cached: unknown,
    revoked, expired and malformed keys go to the database and the audit log every time. A revocation through
    this process's API applies at once (`forget`); one made elsewhere (CLI, another replica) within `ttl_s`.
    An entry never outlives its key's expiry. `ttl_s=0` turns the cache off. Entries are keyed by the token's
    digest, not the secret itself."""

    def __init__(self, *, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 owner_basis: Callable[[VerifiedKey], AllowanceBasis | None] | None = None) -> None:
        self.ttl_s = ttl_s
        # The owner's allowance basis, resolved with the key (SQL) and cached with it: as fresh as a revocation.
        self.owner_basis = owner_basis
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
        start = self._clock()
        deadline = start + self.ttl_s
        if key.expires_at is not None:
            deadline = min(deadline, start + (key.expires_at - utcnow()).total_seconds())
            if deadline <= start:
                return
        with self._lock:
            if len(self._entries) >= CACHE_MAX_KEYS:
                self._entries.clear()  # crude but bounded: a flood of distinct keys only costs lookups
            self._entries[_hash(token)] = (deadline, key)

    def forget(self, *key_ids: str) -> None:
        """Drop these keys (a revoked key and everything made through it) in one pass."""
        ids = set(key_ids)
        with self._lock:
            for digest in [d for d, (_, k) in self._entries.items() if k.id in ids]:
                del self._entries[digest]

    def verify(self, *, db: Database, token: str) -> VerifiedKey:
        """The cached key, else `verify_key` (SQL; raises InvalidApiKey) and remember the success."""
        key = self.get(token)
        if key is None:
            key = VerifiedKey.of(verify_key(db=db, token=token))
            if self.owner_basis is not None:
                key = replace(key, owner_basis=self.owner_basis(key))
            self.put(token, key)
        return key
