"""API key rows. Only the hash of a key's secret is stored."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.db.models import ApiKey, utcnow


@dataclass(frozen=True)
class Revocation:
    key: ApiKey
    revoked_now: bool  # False: the key had been revoked before (revoking is idempotent)
    descendants_revoked: list[str]  # keys made through it that this call revoked, nearest first
    lineage: list[str]  # the key and every key made through it, revoked before or now


def create_api_key(*, session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.commit()
    session.refresh(key)
    return key


def get_api_key(*, session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_api_keys(*, session: Session, tenant: str) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.tenant == tenant).order_by(col(ApiKey.created_at).desc())
    return list(session.exec(stmt))


def descendant_ids(*, session: Session, tenant: str, key_id: str) -> list[str]:
    """Every key made through `key_id` (children, their children, ...), nearest first."""
    out: list[str] = []
    seen = {key_id}
    frontier = [key_id]
    while frontier:
        stmt = select(ApiKey.id).where(ApiKey.tenant == tenant, col(ApiKey.parent_key_id).in_(frontier))
        frontier = [k for k in session.exec(stmt) if k not in seen]
        seen.update(frontier)
        out.extend(sorted(frontier))
    return out


def revoke_api_key(*, session: Session, tenant: str, key_id: str) -> Revocation | None:
    """Revoke a key and every key made through it, in one transaction; None when the tenant has no such key.

    Revoking twice keeps the first revocation time and says so, so the caller audits each key once. A key
    revoked before its children existed as a lineage (rows from before parent_key_id) still takes them along."""
    key = session.get(ApiKey, key_id)
    if key is None or key.tenant != tenant:
        return None
    now = utcnow()
    lineage = [key_id, *descendant_ids(session=session, tenant=tenant, key_id=key_id)]
    revoked: list[str] = []
    for kid in lineage:
        # A conditional UPDATE per key: of two revocations at the same moment (API and CLI), exactly one
        # revokes each key, so each is audited once.
        result = session.execute(update(ApiKey).where(col(ApiKey.id) == kid, col(ApiKey.revoked_at).is_(None))
                                 .values(revoked_at=now))
        if result.rowcount == 1:
            revoked.append(kid)
    session.commit()
    session.refresh(key)
    return Revocation(key=key, revoked_now=key_id in revoked,
                      descendants_revoked=[k for k in revoked if k != key_id], lineage=lineage)


KEY_SUBJECT = "key:"


def key_owners(*, session: Session, tenant: str) -> dict[str, str]:
    """"key:<id>" -> the person at the root of its chain, for the tenant's keys that have one (not the CLI's): a
    key's calls are recorded under its subject and count against that person's allowance."""
    stmt = select(ApiKey.id, ApiKey.owner).where(ApiKey.tenant == tenant, col(ApiKey.owner).is_not(None),
                                                 ApiKey.owner != "cli")
    return {f"{KEY_SUBJECT}{key_id}": str(owner) for key_id, owner in session.exec(stmt)}


def charged_subjects(*, session: Session, tenant: str, member: str) -> list[str]:
    """The subjects whose calls count against `member`'s allowance: theirs and their keys' (any depth)."""
    return [member, *(k for k, owner in key_owners(session=session, tenant=tenant).items() if owner == member)]
