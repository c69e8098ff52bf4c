"""Tenant API keys: create (shown once), list, revoke. Tenant admins only; every change is audited (by the key
service, backend/auth/key_service.py).

A key made with a key belongs to the same person, never outlives it, and goes when it is revoked."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.api.deps import ServicesDep, TenantAdmin, client_ip, deny
from backend.api.params import IntegerOrNone
from backend.auth.api_keys import MAX_EXPIRY_DAYS, SCOPES, ExpiryBeyondParent, InvalidApiKey, KeyInfo, parse_scopes
from backend.auth.key_owners import KeyReview
from backend.auth.key_service import KeyService
from backend.container import Services
from backend.errors import Invalid, NotFound

router = APIRouter(prefix="/api/t/{tenant}", tags=["keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    name: str = Field("", max_length=100)
    scopes: list[str] = Field(min_length=1, description=f"any of: {', '.join(sorted(SCOPES))}",
                              json_schema_extra={"items": {"type": "string", "enum": sorted(SCOPES)}})
    expires_in_days: IntegerOrNone = Field(
        None, ge=0, le=MAX_EXPIRY_DAYS,
        description="days until the key stops working; 0: no expiry (as `atrium keys create --expires-days 0`); "
                    "left out: ATRIUM_API_KEY_DAYS (0 there = no expiry). A key made with a key never outlives it: "
                    "left out, it gets the parent's expiry when that is sooner; a number past the parent's expiry, "
                    "or 0 when the parent expires, is a 422 `expiry_beyond_parent`")

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        if unknown := [s for s in value if s not in SCOPES]:  # as the schema's enum says: "" or " chat " is none
            raise ValueError(f"unknown scope(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(SCOPES))}")
        return parse_scopes(value)  # ValueError -> 422 naming the unknown scope and the allowed ones


class KeyPublic(BaseModel):
    id: str
    tenant: str
    name: str
    scopes: list[str]
    created_by: str | None = Field(description="a subject, `cli`, or `key:<id>` for a key made with a key")
    owner: str | None = Field(description="the person at the root of the key's chain (the key acts for them); "
                                          "`cli` for keys the CLI made")
    parent_key_id: str | None = Field(description="the key this one was made with; revoking it revokes this one")
    created_at: datetime
    expires_at: datetime | None = Field(description="null: no expiry")
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: KeyInfo) -> KeyPublic:
        return cls.model_validate(key, from_attributes=True)


class KeyListed(KeyPublic):
    state: Literal["active", "revoked", "expired"]
    owner_status: Literal["active", "left", "unknown"] = Field(
        description="whether the owner still holds the rights the key's scopes need in this tenant, from the "
                    "claims of their latest chat sign-in: `left` (no longer a member, or lost the role: revoke "
                    "the key or hand it over), `unknown` (never signed in to the chat, or a CLI key)")
    owner_seen_at: datetime | None = Field(description="the owner's latest chat sign-in, which owner_status reads")

    @classmethod
    def of_review(cls, review: KeyReview) -> KeyListed:
        return cls(**KeyPublic.of(review.key).model_dump(), state=review.state, owner_status=review.owner_status,
                   owner_seen_at=review.owner_seen_at)


class KeyRevoked(KeyPublic):
    already_revoked: bool = Field(description="true when the key had been revoked before (at `revoked_at`); "
                                              "revoking is idempotent")
    also_revoked: list[str] = Field(description="keys made through this one (directly or not) that this call "
                                                "revoked with it")


class KeyIssued(KeyPublic):
    token: str = Field(description="the key itself; shown only in this response, store it now")


def _keys(services: Services) -> KeyService:
    assert services.keys is not None  # build_services sets it
    return services.keys


@router.post("/keys", status_code=201)
def create_key(body: KeyCreate, ctx: TenantAdmin, services: ServicesDep, request: Request) -> KeyIssued:
    principal = ctx.principal
    try:
        issued = _keys(services).create(principal, ctx.tenant, scopes=body.scopes, name=body.name,
                                        expires_in_days=body.expires_in_days, route=request.url.path,
                                        ip=client_ip(request))
    except ExpiryBeyondParent as exc:
        raise Invalid(str(exc), code="expiry_beyond_parent",
                      extra={"parent_expires_at": exc.parent_expires_at.isoformat()}) from None
    except InvalidApiKey as exc:  # the key making this key was revoked (or expired) while the request ran
        deny(request, services, 401, "the API key making this key is no longer valid (it was revoked or has "
             "expired meanwhile): ask a tenant admin for a new one", code=exc.reason,
             subject=principal.subject, tenant=ctx.tenant, detail={"key_id": principal.key_id})
    return KeyIssued(**KeyPublic.of(issued.key).model_dump(), token=issued.token)


@router.get("/keys")
def list_keys(ctx: TenantAdmin, services: ServicesDep) -> list[KeyListed]:
    return [KeyListed.of_review(r) for r in _keys(services).review(ctx.tenant)]


@router.delete("/keys/{key_id}")
def revoke_key(key_id: str, ctx: TenantAdmin, services: ServicesDep, request: Request) -> KeyRevoked:
    """Revokes the key and every key made through it. Idempotent: revoking a revoked key is a 200 with
    `already_revoked: true` and the first revocation's time (and no second audit event)."""
    revoked = _keys(services).revoke(ctx.principal, ctx.tenant, key_id, route=request.url.path,
                                     ip=client_ip(request))
    if revoked is None:  # another tenant's key looks exactly like a missing one
        raise NotFound(f"tenant {ctx.tenant!r} has no API key {key_id!r}", code="key_not_found")
    return KeyRevoked(**KeyPublic.of(revoked.key).model_dump(), already_revoked=not revoked.revoked_now,
                      also_revoked=revoked.descendants_revoked)
