"""Tenant API keys: create (shown once), list, revoke. Tenant admins only; every change is audited."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.api.deps import ServicesDep, TenantAdmin, client_ip
from backend.auth.api_keys import SCOPES, issue_key, parse_scopes
from backend.db.models import ApiKey
from backend.db.repositories.api_keys import list_api_keys, revoke_api_key
from backend.errors import NotFound

router = APIRouter(prefix="/api/t/{tenant}", tags=["keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    name: str = Field("", max_length=100)
    scopes: list[str] = Field(min_length=1, description=f"any of: {', '.join(sorted(SCOPES))}")

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return parse_scopes(value)  # ValueError -> 422 naming the unknown scope and the allowed ones


class KeyPublic(BaseModel):
    id: str
    tenant: str
    name: str
    scopes: list[str]
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        return cls.model_validate(key, from_attributes=True)


class KeyRevoked(KeyPublic):
    already_revoked: bool = Field(description="true when the key had been revoked before (at `revoked_at`); "
                                              "revoking is idempotent")


class KeyIssued(KeyPublic):
    token: str = Field(description="the key itself; shown only in this response, store it now")


@router.post("/keys", status_code=201)
def create_key(body: KeyCreate, ctx: TenantAdmin, services: ServicesDep, request: Request) -> KeyIssued:
    issued = issue_key(db=services.db, tenant=ctx.tenant, scopes=body.scopes, name=body.name,
                       created_by=ctx.principal.subject)
    services.audit.record("key_created", subject=ctx.principal.subject, tenant=ctx.tenant,
                          route=request.url.path, ip=client_ip(request), status=201,
                          detail={"key_id": issued.key.id, "scopes": issued.key.scopes, "name": body.name})
    return KeyIssued(**KeyPublic.of(issued.key).model_dump(), token=issued.token)


@router.get("/keys")
def list_keys(ctx: TenantAdmin, services: ServicesDep) -> list[KeyPublic]:
    with services.db.session() as session:
        return [KeyPublic.of(k) for k in list_api_keys(session=session, tenant=ctx.tenant)]


@router.delete("/keys/{key_id}")
def revoke_key(key_id: str, ctx: TenantAdmin, services: ServicesDep, request: Request) -> KeyRevoked:
    """Idempotent: revoking a revoked key is a 200 with `already_revoked: true` and the first revocation's time
    (and no second audit event)."""
    with services.db.session() as session:
        revoked = revoke_api_key(session=session, tenant=ctx.tenant, key_id=key_id)
        if revoked is None:  # another tenant's key looks exactly like a missing one
            raise NotFound(f"tenant {ctx.tenant!r} has no API key {key_id!r}", code="key_not_found")
        key, now = revoked
        public = KeyRevoked(**KeyPublic.of(key).model_dump(), already_revoked=not now)
    services.api_keys.forget(key_id)  # at once here; other replicas within ATRIUM_API_KEY_CACHE_SECONDS
    if now:
        services.audit.record("key_revoked", subject=ctx.principal.subject, tenant=ctx.tenant,
                              route=request.url.path, ip=client_ip(request), status=200,
                              detail={"key_id": key_id})
    return public
