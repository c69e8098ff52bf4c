"""Tenant API keys as a tenant's admins manage them: create (the secret shown once), review, revoke. Every change
is an audit event, recorded here (the sink is injected: auth does not import governance).

A key made with a key belongs to the same person, never outlives it, and goes when it is revoked (api_keys.py).
"""

from __future__ import annotations

from collections.abc import Callable

from backend.auth.api_keys import IssuedKey, KeyCache, Revoked, issue_key, revoke_key_lineage
from backend.auth.guard import AuditSink
from backend.auth.key_owners import KeyReview, review_keys
from backend.auth.principal import Principal
from backend.db.engine import Database


class KeyService:
    def __init__(self, *, db: Database, audit: AuditSink, cache: KeyCache | None,
                 principal_of: Callable[[dict], Principal], default_days: int = 0) -> None:
        """`cache`: this process's verified keys, which forget a revoked key at once; `principal_of`: the app's
        claims -> Principal mapping (whether a key's owner still holds its rights); `default_days`: the expiry
        of a key that asks for none (ATRIUM_API_KEY_DAYS, 0 = none)."""
        self.db = db
        self.audit = audit
        self.cache = cache
        self.principal_of = principal_of
        self.default_days = default_days

    def create(self, principal: Principal, tenant: str, *, scopes: list[str], name: str,
               expires_in_days: int | None, route: str, ip: str | None) -> IssuedKey:
        """A key made by `principal` (a key made with a key: its child). Raises ExpiryBeyondParent, or
        InvalidApiKey when the key making this one was revoked or expired meanwhile (nothing is recorded then:
        the caller refuses the request, and the refusal is audited there)."""
        issued = issue_key(db=self.db, tenant=tenant, scopes=scopes, name=name, created_by=principal.subject,
                           parent_key_id=principal.key_id, expires_in_days=expires_in_days,
                           default_days=self.default_days)
        key = issued.key
        self.audit.record("key_created", subject=principal.subject, tenant=tenant, route=route, ip=ip, status=201,
                          detail={"key_id": key.id, "scopes": key.scopes, "name": name, "owner": key.owner,
                                  "parent_key_id": key.parent_key_id,
                                  "expires_at": key.expires_at.isoformat() if key.expires_at else None})
        return issued

    def review(self, tenant: str) -> list[KeyReview]:
        """Every key of the tenant, newest first, with its state and whether its owner still holds its rights."""
        return review_keys(db=self.db, tenant=tenant, principal_of=self.principal_of)

    def revoke(self, principal: Principal, tenant: str, key_id: str, *, route: str,
               ip: str | None) -> Revoked | None:
        """Revoke the key and every key made through it; None when the tenant has no such key. Idempotent: each
        key is recorded as `key_revoked` once, by the call that revoked it."""
        revoked = revoke_key_lineage(db=self.db, tenant=tenant, key_id=key_id, cache=self.cache)
        if revoked is None:
            return None
        # Each key revoked is an event of its own, so an audit search by key id finds it; `via` names the key
        # whose revocation took it along.
        for kid in ([key_id] if revoked.revoked_now else []) + revoked.descendants_revoked:
            self.audit.record("key_revoked", subject=principal.subject, tenant=tenant, route=route, ip=ip,
                              status=200, detail={"key_id": kid, **({"via": key_id} if kid != key_id else {})})
        return revoked
