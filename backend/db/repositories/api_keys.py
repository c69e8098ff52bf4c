"""API key rows. Only the hash of a key's secret is stored."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.db.models import ApiKey, utcnow


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


def revoke_api_key(*, session: Session, tenant: str, key_id: str) -> tuple[ApiKey, bool] | None:
    """(the key, whether this call revoked it), or None when the tenant has no such key. Revoking twice keeps
    the first revocation time and says so (False), so the caller audits a revocation once."""
    key = session.get(ApiKey, key_id)
    if key is None or key.tenant != tenant:
        return None
    # A conditional UPDATE: of two revocations at the same moment (API and CLI), exactly one revokes.
    result = session.execute(update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None))
                             .values(revoked_at=utcnow()))
    session.commit()
    session.refresh(key)
    return key, result.rowcount == 1
