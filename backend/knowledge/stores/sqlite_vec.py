"""Embedded vector store: sqlite-vec (vec0, tenant as partition key) + FTS5 keyword index, one file.

This Python's sqlite3 cannot load extensions on some builds; pysqlite3 (pysqlite3-binary, Linux x86_64)
is used then. One FTS5 table per tenant keeps keyword search inside the tenant by construction and fast
when other tenants' corpora are large.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from pathlib import Path

from backend.errors import Unavailable
from backend.knowledge.stores.base import ChunkRecord, Hit
from backend.knowledge.text import content_words
from backend.tenants import is_slug


def _connect(path: str):
    import sqlite3

    module = sqlite3
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        try:
            import pysqlite3.dbapi2 as module  # type: ignore[no-redef]
        except ImportError as exc:
            raise Unavailable("this Python's sqlite3 cannot load extensions and pysqlite3-binary is not "
                              "installed; install it or set VECTOR_STORE=pinecone",
                              code="vector_store_unavailable") from exc
    import sqlite_vec

    conn = module.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _blob(vector: list[float]) -> bytes:
    return struct.pack(f"{len(vector)}f", *vector)


def _ns(namespace: str) -> str:
    if not is_slug(namespace):
        raise ValueError(f"invalid namespace {namespace!r}")
    return namespace


def _fts_table(namespace: str) -> str:
    return "fts_" + hashlib.sha1(namespace.encode()).hexdigest()[:16]


def fts_query(text: str) -> str | None:
    """User text -> a safe FTS5 OR-query of its content words (quoted: no FTS syntax gets through)."""
    words = content_words(text)[:32]
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words) or None


class SqliteVecStore:
    name = "sqlite"
    supports_keyword = True

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._conn = None
        self._lock = threading.RLock()
        self._dims: set[int] = set()
        self._fts_tables: set[str] = set()

    @property
    def conn(self):
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                    conn = _connect(self.path)
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS chunks (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, "
                        "tenant TEXT NOT NULL, document_id TEXT NOT NULL, kb TEXT NOT NULL, chunk_index INTEGER "
                        "NOT NULL, title TEXT NOT NULL, section TEXT, page INTEGER, text TEXT NOT NULL, "
                        "dim INTEGER NOT NULL, UNIQUE (tenant, id))")
                    conn.execute("CREATE INDEX IF NOT EXISTS chunks_tenant_doc ON chunks(tenant, document_id)")
                    self._conn = conn
        return self._conn

    def _vec_table(self, dim: int) -> str:
        table = f"vec_{int(dim)}"
        if dim not in self._dims:
            self.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0(chunk_rowid INTEGER "
                              f"PRIMARY KEY, embedding float[{int(dim)}] distance_metric=cosine, "
                              "tenant TEXT PARTITION KEY, document_id TEXT)")
            self._dims.add(dim)
        return table

    def _fts(self, namespace: str) -> str:
        table = _fts_table(namespace)
        if table not in self._fts_tables:
            self.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(body, "
                              "tokenize='porter unicode61')")
            self._fts_tables.add(table)
        return table

    # -- writes ------------------------------------------------------------------------------------------------

    def upsert(self, namespace: str, records: list[ChunkRecord]) -> None:
        namespace = _ns(namespace)
        if not records:
            return
        with self._lock:
            conn = self.conn
            fts = self._fts(namespace)
            tables = {len(r.vector): self._vec_table(len(r.vector)) for r in records}
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._delete_locked(namespace, [r.id for r in records])
                for r in records:
                    cur = conn.execute(
                        "INSERT INTO chunks(id, tenant, document_id, kb, chunk_index, title, section, page, text, "
                        "dim) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (r.id, namespace, r.document_id, r.kb, r.chunk_index, r.title, r.section, r.page, r.text,
                         len(r.vector)))
                    rowid = cur.lastrowid
                    conn.execute(f"INSERT INTO {tables[len(r.vector)]}(chunk_rowid, embedding, tenant, document_id)"
                                 " VALUES (?,?,?,?)", (rowid, _blob(r.vector), namespace, r.document_id))
                    conn.execute(f"INSERT INTO {fts}(rowid, body) VALUES (?,?)", (rowid, r.keyword_text))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _delete_locked(self, namespace: str, ids: list[str]) -> None:
        conn = self.conn
        fts = self._fts(namespace)
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            rows = conn.execute(f"SELECT rowid, dim FROM chunks WHERE tenant = ? AND id IN ({marks})",
                                (namespace, *part)).fetchall()
            for rowid, dim in rows:
                conn.execute(f"DELETE FROM {self._vec_table(dim)} WHERE chunk_rowid = ?", (rowid,))
                conn.execute(f"DELETE FROM {fts} WHERE rowid = ?", (rowid,))
                conn.execute("DELETE FROM chunks WHERE rowid = ?", (rowid,))

    def delete(self, namespace: str, ids: list[str]) -> None:
        namespace = _ns(namespace)
        if not ids:
            return
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self._delete_locked(namespace, ids)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    # -- reads -------------------------------------------------------------------------------------------------

    def _hits(self, namespace: str, scored: list[tuple[int, float]]) -> list[Hit]:
        if not scored:
            return []
        marks = ",".join("?" * len(scored))
        rows = self.conn.execute(
            "SELECT rowid, id, document_id, kb, chunk_index, title, section, page, text FROM chunks "
            f"WHERE tenant = ? AND rowid IN ({marks})", (namespace, *[r for r, _ in scored])).fetchall()
        by_rowid = {row[0]: row for row in rows}
        out = []
        for rowid, score in scored:
            row = by_rowid.get(rowid)
            if row is not None:  # always the tenant's own row: the tenant filter is in the SQL
                out.append(Hit(id=row[1], document_id=row[2], kb=row[3], chunk_index=row[4], title=row[5],
                               section=row[6], page=row[7], text=row[8], score=score))
        return out

    def query(self, namespace: str, vector: list[float], *, top_k: int,
              document_ids: set[str] | None = None) -> list[Hit]:
        namespace = _ns(namespace)
        if document_ids is not None and not document_ids:
            return []
        with self._lock:
            table = self._vec_table(len(vector))
            sql = f"SELECT chunk_rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ? AND tenant = ?"
            params: list = [_blob(vector), min(int(top_k), 4096), namespace]
            if document_ids is not None:
                sql += f" AND document_id IN ({','.join('?' * len(document_ids))})"
                params.extend(sorted(document_ids))
            scored = [(rowid, 1.0 - float(dist)) for rowid, dist in self.conn.execute(sql, params).fetchall()]
            return self._hits(namespace, scored)

    def keyword(self, namespace: str, text: str, *, top_k: int,
                document_ids: set[str] | None = None) -> list[Hit]:
        namespace = _ns(namespace)
        query = fts_query(text)
        if query is None or (document_ids is not None and not document_ids):
            return []
        with self._lock:
            fts = self._fts(namespace)
            sql = f"SELECT rowid, bm25({fts}) FROM {fts} WHERE {fts} MATCH ?"
            params: list = [query]
            if document_ids is not None:
                sql += (f" AND rowid IN (SELECT rowid FROM chunks WHERE tenant = ? AND document_id IN "
                        f"({','.join('?' * len(document_ids))}))")
                params.extend([namespace, *sorted(document_ids)])
            sql += f" ORDER BY bm25({fts}) LIMIT ?"
            params.append(int(top_k))
            scored = [(rowid, -float(score)) for rowid, score in self.conn.execute(sql, params).fetchall()]
            return self._hits(namespace, scored)

    def similarity(self, namespace: str, vector: list[float], ids: list[str]) -> dict[str, float]:
        namespace = _ns(namespace)
        if not ids:
            return {}
        with self._lock:
            table = self._vec_table(len(vector))
            marks = ",".join("?" * len(ids))
            rows = self.conn.execute(
                f"SELECT c.id, vec_distance_cosine(v.embedding, ?) FROM chunks c JOIN {table} v "
                f"ON v.chunk_rowid = c.rowid WHERE c.tenant = ? AND c.id IN ({marks})",
                (_blob(vector), namespace, *ids)).fetchall()
            return {cid: 1.0 - float(dist) for cid, dist in rows}

    def count(self, namespace: str, document_id: str | None = None) -> int:
        namespace = _ns(namespace)
        with self._lock:
            if document_id is None:
                row = self.conn.execute("SELECT count(*) FROM chunks WHERE tenant = ?", (namespace,)).fetchone()
            else:
                row = self.conn.execute("SELECT count(*) FROM chunks WHERE tenant = ? AND document_id = ?",
                                        (namespace, document_id)).fetchone()
            return int(row[0])

    def vector_count(self, namespace: str) -> int:
        """Rows in the vector index itself (tests check it agrees with the chunk table: no orphans)."""
        namespace = _ns(namespace)
        with self._lock:
            total = 0
            for (dim,) in self.conn.execute("SELECT DISTINCT dim FROM chunks").fetchall():
                total += self.conn.execute(f"SELECT count(*) FROM {self._vec_table(dim)} WHERE tenant = ?",
                                           (namespace,)).fetchone()[0]
            return int(total)

    def ping(self) -> None:
        with self._lock:
            self.conn.execute("SELECT vec_version()").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
