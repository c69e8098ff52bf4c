"""Vector stores behind one interface (base.VectorStore); one adapter per file."""

from __future__ import annotations

from backend.knowledge.stores.base import ChunkRecord, Hit, VectorStore
from backend.settings import Settings

__all__ = ["ChunkRecord", "Hit", "VectorStore", "make_store"]


def make_store(settings: Settings) -> VectorStore:
    if settings.vector_store == "pinecone":
        from backend.knowledge.stores.pinecone import PineconeStore

        return PineconeStore(api_key=settings.pinecone_api_key, host=settings.pinecone_index_host)
    from backend.knowledge.stores.sqlite_vec import SqliteVecStore

    return SqliteVecStore(settings.data_dir / "vectors.db")
