"""Pinecone serverless (SDK 10.x): one index, namespace = tenant id; metadata carries the citation.

Deletes are by id (chunk ids are `<document id>:<index>`, known from the job's chunk count), because
serverless indexes do not delete by metadata filter. Keyword search is not offered: retrieval is dense.
"""

from __future__ import annotations

import threading
from typing import Any

from backend.errors import Unavailable, UpstreamError
from backend.knowledge.stores.base import ChunkRecord, Hit
from backend.tenants import is_slug

UPSERT_BATCH = 100  # stays well under the 2 MB request limit with 1536-d vectors + metadata
DELETE_BATCH = 1000


def _ns(namespace: str) -> str:
    if not is_slug(namespace):
        raise ValueError(f"invalid namespace {namespace!r}")
    return namespace


class PineconeStore:
    name = "pinecone"
    supports_keyword = False

    def __init__(self, *, api_key: str | None, host: str | None) -> None:
        if not api_key or not host:
            missing = [n for n, v in (("PINECONE_API_KEY", api_key), ("PINECONE_INDEX_HOST", host)) if not v]
            raise Unavailable(f"VECTOR_STORE=pinecone needs {' and '.join(missing)}",
                              code="vector_store_unavailable")
        self.api_key = api_key
        self.host = host if host.startswith(("http://", "https://")) else f"https://{host}"
        self._index = None
        self._lock = threading.Lock()

    @property
    def index(self):
        if self._index is None:
            with self._lock:
                if self._index is None:
                    from pinecone import Pinecone

                    self._index = Pinecone(api_key=self.api_key).Index(host=self.host)
        return self._index

    def _call(self, what: str, fn, *args, **kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise UpstreamError(f"Pinecone {what} failed: {type(exc).__name__}: {str(exc)[:300]}",
                                code="vector_store_error") from exc

    def upsert(self, namespace: str, records: list[ChunkRecord]) -> None:
        namespace = _ns(namespace)
        for start in range(0, len(records), UPSERT_BATCH):
            vectors = []
            for r in records[start:start + UPSERT_BATCH]:
                meta: dict[str, Any] = {"document_id": r.document_id, "kb": r.kb, "chunk_index": r.chunk_index,
                                        "title": r.title, "text": r.text}
                # Pinecone rejects null metadata values: leave absent fields out.
                if r.page is not None:
                    meta["page"] = r.page
                if r.section:
                    meta["section"] = r.section
                vectors.append({"id": r.id, "values": r.vector, "metadata": meta})
            self._call("upsert", self.index.upsert, vectors=vectors, namespace=namespace)

    def query(self, namespace: str, vector: list[float], *, top_k: int,
              document_ids: set[str] | None = None) -> list[Hit]:
        namespace = _ns(namespace)
        if document_ids is not None and not document_ids:
            return []
        kwargs: dict[str, Any] = {"vector": vector, "top_k": min(int(top_k), 1000), "namespace": namespace,
                                  "include_metadata": True, "include_values": False}
        if document_ids is not None:
            kwargs["filter"] = {"document_id": {"$in": sorted(document_ids)}}
        response = self._call("query", self.index.query, **kwargs)
        hits = []
        for match in response.matches or []:
            meta = dict(match.metadata or {})
            page = meta.get("page")
            hits.append(Hit(id=match.id, document_id=str(meta.get("document_id", "")), kb=str(meta.get("kb", "")),
                            chunk_index=int(meta.get("chunk_index", 0)), title=str(meta.get("title", "")),
                            text=str(meta.get("text", "")), section=meta.get("section"),
                            page=int(page) if page is not None else None, score=float(match.score or 0.0)))
        return hits

    def keyword(self, namespace: str, text: str, *, top_k: int,
                document_ids: set[str] | None = None) -> list[Hit]:
        return []

    def similarity(self, namespace: str, vector: list[float], ids: list[str]) -> dict[str, float]:
        return {}  # only needed for keyword-only hits, which this store never returns

    def delete(self, namespace: str, ids: list[str]) -> None:
        namespace = _ns(namespace)
        for start in range(0, len(ids), DELETE_BATCH):
            self._call("delete", self.index.delete, ids=ids[start:start + DELETE_BATCH], namespace=namespace)

    def count(self, namespace: str, document_id: str | None = None) -> int:
        namespace = _ns(namespace)
        if document_id is not None:
            total = 0
            # SDK 10 yields one ListResponse per page (it follows the pagination tokens itself).
            for page in self._call("list", lambda: list(self.index.list(prefix=f"{document_id}:",
                                                                        namespace=namespace))):
                total += len(page.vectors or [])
            return total
        stats = self._call("describe_index_stats", self.index.describe_index_stats)
        summary = (stats.namespaces or {}).get(namespace)
        return int(summary.vector_count) if summary is not None else 0

    def dimension(self) -> int | None:
        stats = self._call("describe_index_stats", self.index.describe_index_stats)
        return int(stats.dimension) if stats.dimension else None

    def ping(self) -> None:
        self.dimension()

    def close(self) -> None:
        self._index = None
