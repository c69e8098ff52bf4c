"""PostgreSQL vector store: pgvector (HNSW, cosine) + PostgreSQL full-text search, in one table.

One row per chunk holds the citation, the vector and a generated `tsvector` over the keyword text (English
configuration: stemmed like the embedded store's FTS5 porter tokenizer), so a delete removes vector and text
together and there is never an orphan. The schema is created on first use (idempotent, under an advisory lock so
replicas starting together do not race); the `vector` extension must be installable in the database.

Tenant isolation, two layers:
- Every statement on the table is built by `_scoped()` and run by `_run()`, the one place in this adapter that
  touches it: a statement that does not constrain (or, for an insert, set) the tenant through the bound `:tenant`
  parameter is refused, and `:tenant` is always bound to the validated namespace. No caller's text reaches SQL
  other than as a bound parameter (keyword text goes through `websearch_to_tsquery`, which has no syntax errors).
- The table is LIST-partitioned by tenant, one partition per tenant, each with its own HNSW graph and GIN index.
  A tenant's query scans only its partition (the planner prunes the rest), so the approximate-nearest-neighbour
  search walks a graph holding only that tenant's vectors: top-k is never emptied by other tenants' closer
  vectors (pgvector 0.6 filters *after* the index scan), and latency depends on the tenant's size, not the
  fleet's.
Why not row-level security: superusers and the table's owner bypass RLS unless the table is FORCEd and the app
connects as a separate role; in the usual deployment (the app owns its tables) a policy would give a false sense of
safety, and in tests (run as a superuser) it could not be shown to work. The WHERE clause built in one place is
checked by the same contract and isolation tests as the other stores.

Several embedding dimensions can coexist (a re-index to another model): the column is `vector` without a fixed
size, and each dimension gets a partial expression index `(embedding::vector(d)) WHERE dim = d`. HNSW indexes at
most 2,000 dimensions in pgvector 0.6; larger vectors are searched exactly (a warning says so).
"""

from __future__ import annotations

import hashlib
import logging
import threading

import sqlalchemy as sa

from backend.errors import Unavailable
from backend.knowledge.stores.base import ChunkRecord, Hit
from backend.knowledge.text import content_words
from backend.tenants import is_slug

log = logging.getLogger(__name__)

TABLE = "kb_chunk_vector"
HNSW_MAX_DIM = 2000
EF_SEARCH_DEFAULT = 40  # pgvector's default hnsw.ef_search; raised per query when more candidates are asked for
_LOCK_KEY = int.from_bytes(hashlib.sha1(b"atrium.pgvector.schema").digest()[:8], "big", signed=True)
_COLUMNS = "id, document_id, kb, chunk_index, title, section, page, text"
_FIX = ("install pgvector on the server (Cloud SQL, AlloyDB and RDS ship it; self-managed: the postgresql-NN-pgvector "
        "package) and run `CREATE EXTENSION vector;` once in this database as a superuser (on Cloud SQL "
        "cloudsqlsuperuser, on RDS rds_superuser), or set VECTOR_STORE=sqlite for a single node")


def _ns(namespace: str) -> str:
    if not is_slug(namespace):
        raise ValueError(f"invalid namespace {namespace!r}")
    return namespace


def _partition(namespace: str) -> str:
    return f"{TABLE}_{hashlib.sha1(namespace.encode()).hexdigest()[:16]}"


def _vector_literal(vector: list[float]) -> str:
    # pgvector's text input; repr keeps every float exactly (the driver has no vector type without a new package).
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def keyword_query(text: str) -> str | None:
    """User text -> a websearch_to_tsquery OR-query of its content words (like the embedded store's FTS5 query).
    websearch_to_tsquery never raises on syntax; content words cannot start with `-` (negation) or hold quotes."""
    words = content_words(text)[:32]
    return " or ".join(words) or None


def _scoped(sql: str) -> sa.TextClause:
    """Every statement on the chunk table is built here: it must filter (or, for an insert, set) the tenant through
    the bound `:tenant` parameter, which _run binds to the validated namespace and nothing else can."""
    if ":tenant" not in sql:
        raise AssertionError(f"statement without the tenant: {sql[:80]}")
    return sa.text(sql)


def _run(conn: sa.Connection, namespace: str, statement: sa.TextClause,
         params: dict | list[dict] | None = None) -> sa.CursorResult:
    tenant = _ns(namespace)
    if isinstance(params, list):
        return conn.execute(statement, [{**p, "tenant": tenant} for p in params])
    return conn.execute(statement, {**(params or {}), "tenant": tenant})


class PgvectorStore:
    name = "pgvector"
    supports_keyword = True

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self._pool_size = pool_size
        self._engine: sa.Engine | None = None
        self._lock = threading.RLock()
        self._schema_ready = False
        self._dims: set[int] = set()
        self._partitions: set[str] = set()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=self._pool_size,
                                                    max_overflow=self._pool_size)
        return self._engine

    # -- schema (idempotent, created on first use) ---------------------------------------------------------

    def _ddl(self, statements: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            for statement in statements:
                conn.execute(sa.text(statement))

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._lock:
            if self._schema_ready:
                return
            self._ensure_extension()
            self._ddl([
                f"CREATE TABLE IF NOT EXISTS {TABLE} (tenant text NOT NULL, id text NOT NULL, "
                "document_id text NOT NULL, kb text NOT NULL, chunk_index integer NOT NULL, title text NOT NULL, "
                "section text, page integer, text text NOT NULL, keyword_text text NOT NULL, dim integer NOT NULL, "
                "embedding vector NOT NULL, "
                "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, keyword_text)) STORED, "
                "PRIMARY KEY (tenant, id)) PARTITION BY LIST (tenant)",
                f"CREATE INDEX IF NOT EXISTS {TABLE}_doc ON {TABLE} (tenant, document_id)",
                f"CREATE INDEX IF NOT EXISTS {TABLE}_tsv ON {TABLE} USING gin (tsv)",
            ])
            self._schema_ready = True

    def _ensure_extension(self) -> None:
        try:
            with self.engine.begin() as conn:
                have = conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first()
            if have is None:
                self._ddl(["CREATE EXTENSION IF NOT EXISTS vector"])
        except sa.exc.DBAPIError as exc:
            orig = getattr(exc, "orig", None)
            state = getattr(orig, "sqlstate", None)
            where = self.engine.url.render_as_string(hide_password=True)
            if state == "42501":  # insufficient_privilege: the extension is there, this role may not create it
                raise Unavailable(f"VECTOR_STORE=pgvector: {where} has no `vector` extension in this database and "
                                  f"this role may not create it: {_FIX}", code="vector_store_unavailable") from exc
            if state in ("0A000", "58P01"):  # not available / control file missing: pgvector is not installed
                raise Unavailable(f"VECTOR_STORE=pgvector: the PostgreSQL server at {where} does not have pgvector: "
                                  f"{_FIX}", code="vector_store_unavailable") from exc
            raise

    def _ensure_dim(self, dim: int) -> None:
        dim = int(dim)
        if dim in self._dims:
            return
        if dim > HNSW_MAX_DIM:
            log.warning("vectors too large for an HNSW index: searched exactly", extra={
                "dim": dim, "fix": f"use an embedding model of at most {HNSW_MAX_DIM} dimensions for large corpora"})
        else:
            self._ddl([f"CREATE INDEX IF NOT EXISTS {TABLE}_hnsw_{dim} ON {TABLE} USING hnsw "
                       f"((embedding::vector({dim})) vector_cosine_ops) WHERE dim = {dim}"])
        self._dims.add(dim)

    def _ensure_partition(self, namespace: str) -> None:
        table = _partition(namespace)
        if table in self._partitions:
            return
        # DDL takes no bound parameters: the value is a validated slug (letters, digits, `-`, `_`), quoted anyway.
        literal = "'" + _ns(namespace).replace("'", "''") + "'"
        self._ddl([f"CREATE TABLE IF NOT EXISTS {table} PARTITION OF {TABLE} FOR VALUES IN ({literal})"])
        self._partitions.add(table)

    # -- writes --------------------------------------------------------------------------------------------

    def upsert(self, namespace: str, records: list[ChunkRecord]) -> None:
        namespace = _ns(namespace)
        if not records:
            return
        self._ensure_schema()
        self._ensure_partition(namespace)
        for dim in {len(r.vector) for r in records}:
            self._ensure_dim(dim)
        latest = {r.id: r for r in records}  # one row per id: ON CONFLICT may not touch a row twice
        rows = list(latest.values())
        # One statement per batch (arrays unnested server-side): a round trip per row made ingestion crawl.
        params = {"ids": [r.id for r in rows], "document_ids": [r.document_id for r in rows],
                  "kbs": [r.kb for r in rows], "chunk_indexes": [r.chunk_index for r in rows],
                  "titles": [r.title for r in rows], "sections": [r.section for r in rows],
                  "pages": [r.page for r in rows], "texts": [r.text for r in rows],
                  "keyword_texts": [r.keyword_text for r in rows], "dims": [len(r.vector) for r in rows],
                  "embeddings": [_vector_literal(r.vector) for r in rows]}
        statement = _scoped(
            f"INSERT INTO {TABLE} (tenant, {_COLUMNS}, keyword_text, dim, embedding) SELECT :tenant, u.id, "
            "u.document_id, u.kb, u.chunk_index, u.title, u.section, u.page, u.text, u.keyword_text, u.dim, "
            "u.embedding::vector FROM unnest(CAST(:ids AS text[]), CAST(:document_ids AS text[]), "
            "CAST(:kbs AS text[]), CAST(:chunk_indexes AS integer[]), CAST(:titles AS text[]), "
            "CAST(:sections AS text[]), CAST(:pages AS integer[]), CAST(:texts AS text[]), "
            "CAST(:keyword_texts AS text[]), CAST(:dims AS integer[]), CAST(:embeddings AS text[])) "
            "AS u(id, document_id, kb, chunk_index, title, section, page, text, keyword_text, dim, embedding) "
            "ON CONFLICT (tenant, id) DO UPDATE SET document_id = EXCLUDED.document_id, kb = EXCLUDED.kb, "
            "chunk_index = EXCLUDED.chunk_index, title = EXCLUDED.title, section = EXCLUDED.section, "
            "page = EXCLUDED.page, text = EXCLUDED.text, keyword_text = EXCLUDED.keyword_text, dim = EXCLUDED.dim, "
            "embedding = EXCLUDED.embedding")
        with self.engine.begin() as conn:
            _run(conn, namespace, statement, params)

    def delete(self, namespace: str, ids: list[str]) -> None:
        namespace = _ns(namespace)
        if not ids:
            return
        self._ensure_schema()
        with self.engine.begin() as conn:
            _run(conn, namespace, _scoped(f"DELETE FROM {TABLE} WHERE tenant = :tenant AND id = ANY(:ids)"),
                 {"ids": list(ids)})

    # -- reads ---------------------------------------------------------------------------------------------

    @staticmethod
    def _hit(row, score: float) -> Hit:
        return Hit(id=row.id, document_id=row.document_id, kb=row.kb, chunk_index=row.chunk_index, title=row.title,
                   section=row.section, page=row.page, text=row.text, score=score)

    def query(self, namespace: str, vector: list[float], *, top_k: int,
              document_ids: set[str] | None = None) -> list[Hit]:
        namespace = _ns(namespace)
        if document_ids is not None and not document_ids:
            return []
        self._ensure_schema()
        dim = len(vector)
        self._ensure_dim(dim)
        k = min(int(top_k), 4096)
        distance = f"embedding::vector({dim}) <=> CAST(:vector AS vector({dim}))"
        params: dict = {"vector": _vector_literal(vector), "k": k}
        if document_ids is None:
            # The tenant's own HNSW graph (its partition), through the partial index of this dimension.
            sql = (f"SELECT {_COLUMNS}, {distance} AS distance FROM {TABLE} WHERE tenant = :tenant AND dim = {dim} "
                   "ORDER BY distance LIMIT :k")
        else:
            # Chosen documents: exact distances over just their chunks (an index scan filtered afterwards could
            # return fewer than k of them).
            sql = (f"WITH chosen AS MATERIALIZED (SELECT {_COLUMNS}, embedding FROM {TABLE} WHERE tenant = :tenant "
                   f"AND dim = {dim} AND document_id = ANY(:docs)) SELECT {_COLUMNS}, {distance} AS distance "
                   "FROM chosen ORDER BY distance LIMIT :k")
            params["docs"] = sorted(document_ids)
        with self.engine.begin() as conn:
            if k > EF_SEARCH_DEFAULT:
                conn.execute(sa.text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(min(k, 1000))})
            rows = _run(conn, namespace, _scoped(sql), params).all()
        return [self._hit(row, 1.0 - float(row.distance)) for row in rows]

    def keyword(self, namespace: str, text: str, *, top_k: int,
                document_ids: set[str] | None = None) -> list[Hit]:
        namespace = _ns(namespace)
        query = keyword_query(text)
        if query is None or (document_ids is not None and not document_ids):
            return []
        self._ensure_schema()
        params: dict = {"q": query, "k": int(top_k)}
        docs = ""
        if document_ids is not None:
            docs = " AND document_id = ANY(:docs)"
            params["docs"] = sorted(document_ids)
        # ts_rank (term frequency, no length normalisation): of six ts_rank/ts_rank_cd variants tried on
        # bench/retrieval_quality.py it and ts_rank_cd(.., 1) found all 104 answer passages in hybrid mode, as FTS5's
        # BM25 does; ts_rank costs a fifth of ts_rank_cd when most of a tenant's chunks match (bench/README.md).
        sql = (f"SELECT {_COLUMNS}, ts_rank(tsv, q) AS rank FROM {TABLE}, "
               f"websearch_to_tsquery('english'::regconfig, :q) AS q WHERE tenant = :tenant AND tsv @@ q{docs} "
               "ORDER BY rank DESC, id LIMIT :k")
        with self.engine.begin() as conn:
            rows = _run(conn, namespace, _scoped(sql), params).all()
        return [self._hit(row, float(row.rank)) for row in rows]

    def similarity(self, namespace: str, vector: list[float], ids: list[str]) -> dict[str, float]:
        namespace = _ns(namespace)
        if not ids:
            return {}
        self._ensure_schema()
        dim = len(vector)
        sql = (f"SELECT id, embedding::vector({dim}) <=> CAST(:vector AS vector({dim})) AS distance FROM {TABLE} "
               f"WHERE tenant = :tenant AND dim = {dim} AND id = ANY(:ids)")
        with self.engine.begin() as conn:
            rows = _run(conn, namespace, _scoped(sql), {"vector": _vector_literal(vector), "ids": list(ids)}).all()
        return {row.id: 1.0 - float(row.distance) for row in rows}

    def count(self, namespace: str, document_id: str | None = None) -> int:
        namespace = _ns(namespace)
        self._ensure_schema()
        sql = f"SELECT count(*) FROM {TABLE} WHERE tenant = :tenant"
        params = {}
        if document_id is not None:
            sql += " AND document_id = :document_id"
            params["document_id"] = document_id
        with self.engine.begin() as conn:
            return int(_run(conn, namespace, _scoped(sql), params).scalar_one())

    def vector_count(self, namespace: str) -> int:
        """Vectors stored for the tenant: the vector is a column of the chunk's row, so this equals count()."""
        namespace = _ns(namespace)
        self._ensure_schema()
        with self.engine.begin() as conn:
            return int(_run(conn, namespace, _scoped(
                f"SELECT count(embedding) FROM {TABLE} WHERE tenant = :tenant")).scalar_one())

    def ping(self) -> None:
        self._ensure_schema()
        with self.engine.begin() as conn:
            conn.execute(sa.text("SELECT '[1]'::vector")).scalar_one()

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
