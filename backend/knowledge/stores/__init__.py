"""Vector stores behind one interface (base.VectorStore); one adapter per file."""

from __future__ import annotations

from backend.knowledge.stores.base import ChunkRecord, Hit, VectorStore
from backend.settings import Settings

__all__ = ["ChunkRecord", "Hit", "VectorStore", "make_store"]


def make_store(settings: Settings) -> VectorStore:
    if settings.vector_store == "pinecone":
        from backend.knowledge.stores.pinecone import PineconeStore

        return PineconeStore(api_key=settings.pinecone_api_key, host=settings.pinecone_index_host)
    if settings.vector_store == "pgvector":
        from backend.errors import Unavailable
        from backend.knowledge.stores.pgvector import PgvectorStore

        if not settings.uses_postgres:
            raise Unavailable("VECTOR_STORE=pgvector keeps the vectors in the PostgreSQL database: set DATABASE_URL "
                              "to a PostgreSQL URL with the `vector` extension, or set VECTOR_STORE=sqlite",
                              code="vector_store_unavailable")
        return PgvectorStore(settings.sql_url)
    from backend.knowledge.stores.sqlite_vec import SqliteVecStore

    return SqliteVecStore(settings.data_dir / "vectors.db")
