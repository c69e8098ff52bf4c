"""SQLModel tables. Every tenant-owned row carries `tenant`; repositories filter on it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ChatTurn(SQLModel, table=True):
    __tablename__ = "chat_turn"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    tenant: str = Field(index=True)
    subject: str = Field(index=True)
    channel: str = "ui"  # ui | api | openai | studio
    assistant: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    prompt_label: str | None = None
    model: str | None = None
    tier: str | None = None
    route_reason: str | None = None
    fallback_from: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    cached: bool = False
    outcome: str = "ok"  # ok | error | refused | quota
    error: str | None = None
    chunk_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(index=True)  # login, denied, key_created, key_revoked, suspicious_access, prompt_*, ...
    subject: str | None = Field(default=None, index=True)
    tenant: str | None = Field(default=None, index=True)
    route: str | None = None
    ip: str | None = Field(default=None, index=True)
    status: int | None = None
    reason: str | None = None
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True)  # public key id, also the visible prefix of the token
    tenant: str = Field(index=True)
    name: str = ""
    key_hash: str  # sha256 of the secret; the secret itself is never stored
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
