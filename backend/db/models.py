"""SQLModel tables. Every tenant-owned row carries `tenant`; repositories filter on it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, LargeBinary
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


# -- knowledge base (issue 4) -----------------------------------------------------------------------------


class KbDocument(SQLModel, table=True):
    """One uploaded document and its ingestion job (the job state lives here, so it survives restarts)."""

    __tablename__ = "kb_document"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    kb: str = "default"
    title: str
    filename: str
    content_type: str  # detected from the bytes: pdf | docx | html | markdown | text
    content_hash: str = Field(index=True)  # sha256 of the bytes: same content = same document
    size_bytes: int = 0
    # queued | parsing | embedding | ready | failed | deleting
    status: str = Field(default="queued", index=True)
    progress: float = 0.0  # 0..1
    error: str | None = None
    chunk_total: int = 0
    chunks_done: int = 0  # checkpoint: chunks [0, chunks_done) are in the vector store
    embedding_model: str | None = None
    replaces: str | None = None  # the older version this upload supersedes once it is ready
    attempts: int = 0
    claimed_by: str | None = None  # worker lease: host:pid:nonce
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    doc_metadata: dict = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False,
                                                                       default=dict))


class KbBlob(SQLModel, table=True):
    """The uploaded bytes, kept so an interrupted job can resume and nothing a user sent is lost."""

    __tablename__ = "kb_blob"

    document_id: str = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class KbEmbeddingModel(SQLModel, table=True):
    """Which embedding model a tenant's vectors came from; vectors of two models are never mixed."""

    __tablename__ = "kb_embedding_model"

    tenant: str = Field(primary_key=True)
    model: str
    dimension: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
