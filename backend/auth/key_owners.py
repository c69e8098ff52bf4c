"""A tenant's API keys as an admin reviews them: state, and whether the person behind each key still holds the
rights its scopes need (the answer to "keys keep working after their creator left").

The owner's rights come from the claims stored at their latest chat sign-in (table chat_user), mapped through the
same claims -> Principal code as a login: an owner removed from the tenant's groups at the IdP shows as `left`
once they sign in again, or at once for a demo account removed from demo_users.yaml. Someone who never signed in
to the chat (an API-only user) and keys made by the CLI are `unknown`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from backend.auth.api_keys import CLI_OWNER, KeyInfo, VerifiedKey, aware
from backend.auth.guard import allowed
from backend.auth.principal import AllowanceBasis, Principal
from backend.db.engine import Database
from backend.db.models import utcnow
from backend.db.repositories.api_keys import list_api_keys
from backend.db.repositories.conversations import get_chat_user

OwnerStatus = Literal["active", "left", "unknown"]
KeyState = Literal["active", "revoked", "expired"]


@dataclass(frozen=True)
class KeyReview:
    key: KeyInfo
    state: KeyState
    owner_status: OwnerStatus
    owner_seen_at: datetime | None  # the owner's latest chat sign-in: how fresh `owner_status` is


def key_state(key: KeyInfo, now: datetime) -> KeyState:
    if key.revoked_at is not None:
        return "revoked"
    expires_at = aware(key.expires_at)
    return "expired" if expires_at is not None and expires_at <= now else "active"


def review_keys(*, db: Database, tenant: str,
                principal_of: Callable[[dict], Principal]) -> list[KeyReview]:
    """`principal_of`: the app's claims -> Principal mapping (Services.principal_from_claims)."""
    now = utcnow()
    out: list[KeyReview] = []
    with db.session() as session:
        keys = [KeyInfo.of(row) for row in list_api_keys(session=session, tenant=tenant)]
        claims: dict[str, tuple[dict, datetime] | None] = {}
        for owner in {k.owner for k in keys if k.owner and k.owner != CLI_OWNER}:
            user = get_chat_user(session=session, identifier=owner)
            claims[owner] = (dict(user.claims), aware(user.updated_at)) if user is not None else None
    principals: dict[str, Principal | None] = {}
    for owner, seen in claims.items():
        try:
            principals[owner] = principal_of(seen[0]) if seen is not None else None
        except ValueError:  # the account is gone (a demo user removed) or its claims no longer map to a user
            principals[owner] = None
    for key in keys:
        seen = claims.get(key.owner or "")
        status: OwnerStatus = "unknown"
        if seen is not None:
            principal = principals.get(key.owner or "")
            holds = principal is not None and all(allowed(principal, tenant, scope) for scope in key.scopes)
            status = "active" if holds else "left"
        out.append(KeyReview(key=key, state=key_state(key, now), owner_status=status,
                             owner_seen_at=seen[1] if seen is not None else None))
    return out


def owner_basis(*, db: Database, key: VerifiedKey,
                principal_of: Callable[[dict], Principal]) -> AllowanceBasis | None:
    """The roles and claim-group overrides in the key's tenant of the person the key acts for — what chooses the
    allowance its calls count against — from their claims at their latest chat sign-in, mapped now (a demo account:
    demo_users.yaml now). None: no person (CLI), never signed in here, gone, or no longer in the key's tenant."""
    if not key.owner or key.owner == CLI_OWNER:
        return None
    with db.session() as session:
        user = get_chat_user(session=session, identifier=key.owner)
        claims = dict(user.claims) if user is not None else None
    if claims is None:
        return None
    try:
        owner = principal_of(claims)
    except ValueError:  # the account is gone or its claims no longer map to a user
        return None
    if not owner.is_member(key.tenant):
        return None
    return owner.roles_in(key.tenant), owner.limit_groups.get(key.tenant, frozenset())
