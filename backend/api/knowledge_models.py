"""What the knowledge routes answer (documents, knowledge bases, search), as the OpenAPI document states it.

The routes return the knowledge service's dicts as they are; these models describe them (FastAPI's `responses`)
without converting each answer again. tests/api/test_response_schemas.py holds real answers to them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.knowledge.retrieval import Mode

DocumentStatus = Literal["queued", "parsing", "embedding", "ready", "failed", "deleting"]


class DocumentPublic(BaseModel):
    """A document of the tenant's knowledge base, and how far its ingestion has come."""

    id: str
    kb: str = Field(description="its knowledge base")
    knowledge_id: str = Field(description="`<tenant>/<kb>`: what Dify's External Knowledge API is given")
    title: str
    filename: str
    content_type: str = Field(description="what the bytes are: pdf, docx, html, markdown or text")
    size_bytes: int
    status: DocumentStatus
    progress: float = Field(description="0 to 1")
    error: str | None = Field(description="why it failed (status `failed`)")
    chunks: int = Field(description="passages it was cut into (0 until parsed)")
    chunks_done: int = Field(description="passages embedded and searchable so far")
    embedding_model: str | None
    content_hash: str = Field(description="SHA-256 of the bytes: the same bytes again are this document")
    created_by: str | None = Field(description="the subject who uploaded it")
    created_at: str = Field(description="ISO 8601, UTC")
    updated_at: str = Field(description="ISO 8601, UTC")
    metadata: dict[str, Any] = Field(description="the `metadata` given at upload")


class DocumentUploaded(DocumentPublic):
    duplicate: bool = Field(description="true: the knowledge base already had these bytes; this is that document")


class FileRefused(BaseModel):
    """A file of the upload that was not accepted, and why (the others were)."""

    filename: str | None
    error: str = Field(description="a stable code, e.g. empty_file, type_mismatch, file_too_large")
    detail: str = Field(description="what is wrong with the file and what to do about it")
    status: int = Field(description="the HTTP status this file alone would have been refused with")


class UploadAccepted(BaseModel):
    documents: list[DocumentUploaded] = Field(description="accepted: poll GET /documents/{id} for their status")
    errors: list[FileRefused]


class DocumentList(BaseModel):
    documents: list[DocumentPublic]


class DocumentDeleted(BaseModel):
    id: str
    deleted: bool = Field(description="false (a 202): a busy worker finishes the deletion; GET answers 404 now")
    status: Literal["deleted", "deleting"]


class KnowledgeBase(BaseModel):
    kb: str
    knowledge_id: str = Field(description="`<tenant>/<kb>`: the knowledge ID to register in Dify")


class KnowledgeBases(BaseModel):
    knowledge_bases: list[KnowledgeBase]


class ReindexedDocument(BaseModel):
    id: str
    filename: str


class ReindexQueued(BaseModel):
    queued: int = Field(description="how many documents were queued to be chunked and embedded again")
    documents: list[ReindexedDocument]


class SearchHit(BaseModel):
    chunk_id: str
    document_id: str
    kb: str
    title: str = Field(description="the document's title")
    section: str | None = Field(description="the heading the passage is under")
    page: int | None = Field(description="its page, in a PDF")
    text: str = Field(description="the passage")
    score: float = Field(description="relevance, 0 to 1")


class SearchResults(BaseModel):
    query: str
    mode: Mode = Field(description="how passages were ranked: `hybrid` (meaning and keywords) or `dense` (meaning)")
    relevance_threshold: float = Field(description="the score below which the chat treats a passage as not "
                                                   "relevant (ATRIUM_RETRIEVAL_MIN_SCORE)")
    results: list[SearchHit] = Field(description="best first")
