"""The vector-store interface and the tenant-bound handle.

Adapters take a `namespace` argument, but only backend.knowledge code calls them: routes, the UI and
the chat get a TenantStore, which KnowledgeService.store_for() creates for a principal's own tenant
(namespace = tenant id). Nothing a caller sends can name a namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


def chunk_id(document_id: str, index: int) -> str:
    # Deterministic ids make re-upserting a batch after a crash an overwrite, never a duplicate.
    return f"{document_id}:{index}"


@dataclass
class ChunkRecord:
    id: str
    document_id: str
    kb: str
    chunk_index: int
    title: str
    text: str  # the quoted passage
    section: str | None
    page: int | None
    vector: list[float]
    keyword_text: str  # title + section + passage, for keyword search


@dataclass
class Hit:
    id: str
    document_id: str
    kb: str
    chunk_index: int
    title: str
    text: str
    section: str | None
    page: int | None
    score: float  # cosine similarity (0..1 for the models we use; clamped by the caller)


class VectorStore(Protocol):
    name: str
    supports_keyword: bool

    def upsert(self, namespace: str, records: list[ChunkRecord]) -> None: ...

    def query(self, namespace: str, vector: list[float], *, top_k: int,
              document_ids: set[str] | None = None) -> list[Hit]: ...

    def keyword(self, namespace: str, text: str, *, top_k: int,
                document_ids: set[str] | None = None) -> list[Hit]: ...

    def similarity(self, namespace: str, vector: list[float], ids: list[str]) -> dict[str, float]: ...

    def delete(self, namespace: str, ids: list[str]) -> None: ...

    def count(self, namespace: str, document_id: str | None = None) -> int: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


class TenantStore:
    """A vector-store handle bound to one tenant's namespace (see KnowledgeService.store_for)."""

    def __init__(self, store: VectorStore, namespace: str) -> None:
        self._store = store
        self._namespace = namespace

    @property
    def tenant(self) -> str:
        return self._namespace

    @property
    def supports_keyword(self) -> bool:
        return self._store.supports_keyword

    def upsert(self, records: list[ChunkRecord]) -> None:
        self._store.upsert(self._namespace, records)

    def query(self, vector: list[float], *, top_k: int, document_ids: set[str] | None = None) -> list[Hit]:
        return self._store.query(self._namespace, vector, top_k=top_k, document_ids=document_ids)

    def keyword(self, text: str, *, top_k: int, document_ids: set[str] | None = None) -> list[Hit]:
        return self._store.keyword(self._namespace, text, top_k=top_k, document_ids=document_ids)

    def similarity(self, vector: list[float], ids: list[str]) -> dict[str, float]:
        return self._store.similarity(self._namespace, vector, ids)

    def delete(self, ids: list[str]) -> None:
        self._store.delete(self._namespace, ids)

    def count(self, document_id: str | None = None) -> int:
        return self._store.count(self._namespace, document_id)
