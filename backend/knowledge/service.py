"""KnowledgeService: the one entry point to a tenant's knowledge base (API, chat, Dify, UI and CLI).

Every method takes the caller's verified Principal and the tenant it acts in, checks membership and the
permission (`ingest` to add/delete, `retrieval` to read), and only then builds a TenantStore for that
tenant. Nothing a caller sends names a namespace.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.auth.guard import AccessGuard
from backend.auth.principal import Principal
from backend.auth.request_context import client_ip
from backend.db.engine import Database
from backend.db.models import KbDocument
from backend.db.repositories import documents as repo
from backend.errors import AtriumError, Conflict, Invalid, NotFound
from backend.governance.audit import AuditLog
from backend.governance.inflight import InflightLimits
from backend.governance.metrics import NoMetrics
from backend.knowledge import metadata_filter
from backend.knowledge.ingest import IngestWorker
from backend.knowledge.parse import clean_folder, validate
from backend.knowledge.retrieval import Citation, Retrieval, is_relevant
from backend.knowledge.stores.base import Hit, TenantStore, VectorStore
from backend.tenants import TenantRegistry
from backend.tracing import TENANT, span

DONE = ("ready", "failed")  # a document's statuses after which nothing changes without a new upload
CHAT_UPLOAD_ROUTE = "chat:upload"

# A knowledge base name as every route's OpenAPI schema states it (ASCII letters, digits, '-', '_'; empty means
# the default one), so what the schema allows the server takes; names are kept lower-cased.
KB_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_-]{0,62})?$"


def knowledge_id(tenant: str, kb: str) -> str:
    """The id Dify is configured with: tenant-qualified, so another tenant's id is simply not found."""
    return f"{tenant}/{kb}"


def check_kb(kb: str | None) -> str:
    if not re.fullmatch(KB_PATTERN, kb or ""):
        # Quote what was sent: its lower-cased form would not be what the user typed.
        raise Invalid(f"knowledge base name {(kb or '')[:80]!r} must be up to 63 ASCII letters, digits, "
                      "'-' or '_', starting with a letter or digit",
                      code="invalid_kb")
    return (kb or "default").lower()


def document_public(doc: KbDocument, **extra: Any) -> dict[str, Any]:
    return {
        "id": doc.id, "kb": doc.kb, "knowledge_id": knowledge_id(doc.tenant, doc.kb), "title": doc.title,
        "filename": doc.filename, "content_type": doc.content_type, "size_bytes": doc.size_bytes,
        "status": doc.status, "progress": round(doc.progress, 3), "error": doc.error,
        "chunks": doc.chunk_total, "chunks_done": doc.chunks_done, "embedding_model": doc.embedding_model,
        "content_hash": doc.content_hash, "created_by": doc.created_by,
        "created_at": doc.created_at.isoformat(), "updated_at": doc.updated_at.isoformat(),
        "metadata": {k: v for k, v in doc.doc_metadata.items() if k != "title_source"}, **extra,
    }


def hit_public(hit: Hit) -> dict[str, Any]:
    return {"chunk_id": hit.id, "document_id": hit.document_id, "kb": hit.kb, "title": hit.title,
            "section": hit.section, "page": hit.page, "text": hit.text, "score": hit.score}


@dataclass
class UploadFile:
    filename: str | None
    data: bytes
    # The folder it was in, relative to the folder given to `atrium ingest` ("apac" for apac/notes.md): the
    # document is named by that path, so files of the same name in two folders are two documents.
    folder: str = ""


@dataclass
class AttachedFile:
    """A file attached to a chat message: its name, and the temporary file the chat framework wrote it to."""

    filename: str | None
    path: Path


MAX_METADATA_NUMBER = 2**53  # what every JSON reader (and the Dify filters) holds exactly


def check_metadata(metadata: dict[str, Any]) -> None:
    """Metadata is stored with every passage and read back by listings, filters and Dify: only strings, booleans
    and finite numbers a JSON reader holds exactly (NaN or 1e400 stored once broke the tenant's document list)."""
    for key, value in metadata.items():
        if isinstance(value, bool | str) or value is None:
            continue
        if isinstance(value, int | float) and math.isfinite(value) and abs(value) <= MAX_METADATA_NUMBER:
            continue
        shown = value if isinstance(value, int | float) else type(value).__name__
        raise Invalid(f"metadata {str(key)[:100]!r}: {shown} is not a value documents can carry: use a string, a "
                      f"boolean or a finite number of at most {MAX_METADATA_NUMBER:,}", code="invalid_metadata")


class KnowledgeService:
    def __init__(self, *, db: Database, registry: TenantRegistry, audit: AuditLog, store: VectorStore,
                 retrieval: Retrieval, worker: IngestWorker, max_upload_bytes: int, min_score: float) -> None:
        self.db = db
        self.registry = registry
        self.audit = audit
        self.access = AccessGuard(audit=audit, configured=lambda tenant: registry.get(tenant) is not None)
        self.store = store
        self.retrieval = retrieval
        self.worker = worker
        self.max_upload_bytes = max_upload_bytes
        self.min_score = min_score
        # The tenants' caps in this process (container.py): a search (API, Dify) embeds its query, a model call
        # in a worker thread of the few the process has for everyone, so it takes one of `limits.model_calls`.
        self.inflight: InflightLimits | None = None
        self.metrics: NoMetrics = NoMetrics()  # the container's: retrieval latency, the ingestion backlog

    def backlog(self) -> dict[str, tuple[int, float]]:
        """Served tenant -> (documents waiting for or in ingestion, the oldest one's age in seconds): the metrics'
        queue depth and job age, read at each scrape (one SQL query)."""
        now = datetime.now(UTC)
        with self.db.session() as session:
            rows = repo.job_backlog(session=session, tenants=self.registry.ids())
        out = {}
        for tenant, (count, oldest) in rows.items():
            if oldest is not None and oldest.tzinfo is None:  # SQLite hands back naive UTC
                oldest = oldest.replace(tzinfo=UTC)
            out[tenant] = (count, max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        return out

    # -- access -------------------------------------------------------------------------------------------------

    def authorize(self, principal: Principal, tenant: str, permission: str, *, route: str = "knowledge") -> None:
        self.access.check(principal, tenant, permission, route=route, ip=client_ip.get())

    def store_for(self, principal: Principal, tenant: str, *, permission: str = "retrieval") -> TenantStore:
        """The only way to a vector-store handle: for a tenant the principal belongs to."""
        self.authorize(principal, tenant, permission)
        return TenantStore(self.store, tenant)

    # -- documents ----------------------------------------------------------------------------------------------

    def reindex(self, principal: Principal, tenant: str, *, route: str = "knowledge:reindex",
                include_failed: bool = False) -> dict[str, str]:
        """Queue every ready document of the tenant (and the failed ones with `include_failed`) to be chunked and
        embedded again from its stored file, e.g. after an upgrade that changes chunking; returns
        {document id: filename}. Failed ones are left out by default: most failed for a reason in the file
        itself (a scanned PDF without text) and would only fail again."""
        self.authorize(principal, tenant, "ingest", route=route)
        statuses = ("ready", "failed") if include_failed else ("ready",)
        with self.db.session() as session:
            docs = repo.requeue_documents(session=session, tenant=tenant, statuses=statuses)
            queued = {d.id: d.filename for d in docs}
        self.audit.record("documents_reindexed", subject=principal.subject, tenant=tenant, route=route,
                          detail={"documents": len(queued), "include_failed": include_failed})
        self.worker.wake()
        return queued

    def reindex_document(self, principal: Principal, tenant: str, document_id: str, *,
                         route: str = "knowledge:reindex") -> dict:
        """Queue one ready or failed document to be chunked and embedded again from its stored file (a failed one
        retried after a fix elsewhere, e.g. the embedding model is back); one being read already is a 409."""
        self.authorize(principal, tenant, "ingest", route=route)
        with self.db.session() as session:
            doc = repo.get_document(session=session, tenant=tenant, document_id=document_id)
            if doc is None or doc.status == "deleting":
                raise self._not_found(principal, tenant, document_id, "knowledge:reindex")
            queued = repo.requeue_documents(session=session, tenant=tenant, document_ids=[document_id])
            if not queued:
                raise Conflict(f"{doc.filename!r} is being read already ({doc.status}): wait until it is ready "
                               "or failed", code="document_busy")
            public = document_public(queued[0])
        self.audit.record("documents_reindexed", subject=principal.subject, tenant=tenant, route=route,
                          detail={"documents": 1, "document_id": document_id})
        self.worker.wake()
        return public

    def upload(self, principal: Principal, tenant: str, files: list[UploadFile], *, kb: str | None = None,
               metadata: dict[str, Any] | None = None, title: str | None = None,
               route: str = "knowledge:upload") -> dict[str, list]:
        """Validate each file on its own (one bad file never fails the others) and queue the good ones.
        Blocking (hashing, PDF/zip checks): call from a worker thread."""
        self.authorize(principal, tenant, "ingest", route=route)
        kb = check_kb(kb)
        check_metadata(metadata or {})
        accepted: list[dict] = []
        rejected: list[dict] = []
        for item in files:
            try:
                accepted.append(self._accept(principal, tenant, kb, item, metadata or {}, title))
            except AtriumError as exc:
                rejected.append({"filename": item.filename, "error": exc.code, "detail": exc.message,
                                 "status": exc.status_code})
        if accepted:
            self.worker.wake()
        self.audit.record("documents_uploaded", subject=principal.subject, tenant=tenant, route=route,
                          status=202 if accepted else 422,
                          detail={"kb": kb, "accepted": [d["id"] for d in accepted],
                                  "rejected": [{"filename": e["filename"], "error": e["error"]} for e in rejected]})
        return {"documents": accepted, "errors": rejected}

    def upload_attachments(self, principal: Principal, tenant: str, files: list[AttachedFile]) -> dict[str, list]:
        """Files attached in the chat go into the tenant's default knowledge base, for those allowed to ingest
        (tenant admins) only: a refusal is audited and raised (Forbidden) before any file is read; else the upload
        as any other (each file on its own, audited). Blocking: call from a worker thread."""
        self.authorize(principal, tenant, "ingest", route=CHAT_UPLOAD_ROUTE)
        with self.inflight.upload(tenant) if self.inflight else nullcontext():  # tenants.yaml limits.uploads
            uploads = [UploadFile(filename=f.filename, data=f.path.read_bytes()) for f in files]
            return self.upload(principal, tenant, uploads, route=CHAT_UPLOAD_ROUTE)

    async def follow_documents(self, principal: Principal, tenant: str, documents: list[dict], *,
                               every_s: float = 1.0, for_s: float = 900.0) -> AsyncIterator[list[dict]]:
        """The documents (as `upload` returned them) with their status read again every `every_s` seconds, until
        each is ready or failed or `for_s` has passed (the ingestion goes on regardless); one that was deleted
        meanwhile is reported failed."""
        docs = list(documents)
        pending = {d["id"] for d in docs if d["status"] not in DONE}
        deadline = time.monotonic() + for_s
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(every_s)
            for i, doc in enumerate(docs):
                if doc["id"] in pending:
                    docs[i] = await asyncio.to_thread(self._progress, principal, tenant, doc)
                    if docs[i]["status"] in DONE:
                        pending.discard(doc["id"])
            yield list(docs)

    def _progress(self, principal: Principal, tenant: str, doc: dict) -> dict:
        try:
            return {**doc, **self.get_document(principal, tenant, doc["id"])}
        except AtriumError:  # deleted meanwhile
            return {**doc, "status": "failed", "error": "deleted while it was being added"}

    def _accept(self, principal: Principal, tenant: str, kb: str, item: UploadFile, metadata: dict,
                title: str | None) -> dict:
        filename, content_type = validate(item.data, item.filename, max_bytes=self.max_upload_bytes)
        if item.folder:
            filename = f"{clean_folder(item.folder)}/{filename}"
        digest = hashlib.sha256(item.data).hexdigest()
        with self.db.session() as session:
            same = repo.find_by_hash(session=session, tenant=tenant, kb=kb, content_hash=digest)
            if same is not None:
                if same.status == "failed":  # the same bytes again: try once more
                    same.status, same.error, same.attempts, same.progress = "queued", None, 0, 0.0
                    same = repo.save_document(session=session, doc=same)
                return document_public(same, duplicate=True)
            older = repo.find_by_filename(session=session, tenant=tenant, kb=kb, filename=filename)
            doc = KbDocument(
                id=uuid.uuid4().hex, tenant=tenant, kb=kb, title=(title or filename).strip()[:300],
                filename=filename, content_type=content_type, content_hash=digest, size_bytes=len(item.data),
                created_by=principal.subject, replaces=max(older, key=lambda d: d.created_at).id if older else None,
                doc_metadata={**metadata, **({} if title else {"title_source": "filename"})},
            )
            doc = repo.create_document(session=session, doc=doc, data=item.data)
        return document_public(doc, duplicate=False)

    def list_documents(self, principal: Principal, tenant: str, *, kb: str | None = None,
                       status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
        """A knowledge base that does not exist is a 404 naming those that do (a typo is not "no documents")."""
        self.authorize(principal, tenant, "retrieval")
        kb = self.existing_kb(principal, tenant, kb) if kb else None
        with self.db.session() as session:
            docs = repo.list_documents(session=session, tenant=tenant, kb=kb, status=status, limit=limit,
                                       offset=offset)
        return [document_public(d) for d in docs]

    def existing_kb(self, principal: Principal, tenant: str, kb: str) -> str:
        """The knowledge base's name when the tenant has it; else a 404 `kb_not_found` naming the ones it has."""
        bases = [b["kb"] for b in self.knowledge_bases(principal, tenant)]
        name = check_kb(kb)
        if name not in bases:
            raise NotFound(f"tenant {tenant!r} has no knowledge base {kb[:80]!r}; it has: "
                           f"{', '.join(bases) or 'none yet (upload a document first)'}", code="kb_not_found")
        return name

    def get_document(self, principal: Principal, tenant: str, document_id: str) -> dict:
        self.authorize(principal, tenant, "retrieval")
        with self.db.session() as session:
            doc = repo.get_document(session=session, tenant=tenant, document_id=document_id)
        if doc is None or doc.status == "deleting":
            raise self._not_found(principal, tenant, document_id, "knowledge:get")
        return document_public(doc)

    def _not_found(self, principal: Principal, tenant: str, document_id: str, route: str) -> NotFound:
        """A 404 either way; an id that exists in another tenant came from a leak or a guess: audited."""
        with self.db.session() as session:
            foreign = repo.document_tenant(session=session, document_id=document_id)
        if foreign is not None and foreign != tenant:
            self.audit.record("denied", subject=principal.subject, tenant=tenant, route=route, status=404,
                              reason="other_tenants_document", detail={"document": document_id[:64]})
        return NotFound(f"tenant {tenant!r} has no document {document_id!r}", code="document_not_found")

    def delete_document(self, principal: Principal, tenant: str, document_id: str, *,
                        route: str = "knowledge:delete", ip: str | None = None) -> dict:
        """Marks the document for deletion and removes its vectors and row now (blocking)."""
        self.authorize(principal, tenant, "ingest", route=route)
        with self.db.session() as session:
            doc = repo.get_document(session=session, tenant=tenant, document_id=document_id)
            if doc is None:
                raise self._not_found(principal, tenant, document_id, "knowledge:delete")
            doc.status = "deleting"
            doc = repo.save_document(session=session, doc=doc)
        self.audit.record("document_deleted", subject=principal.subject, tenant=tenant, route=route, ip=ip,
                          detail={"document_id": doc.id})
        # A worker still embedding it notices "deleting" at its next checkpoint and lets go; whoever then
        # holds the job removes the vectors before the row (also after a crash: the job stays queued).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.worker.run_once(only={doc.id})
            with self.db.session() as session:
                if repo.get_document(session=session, tenant=tenant, document_id=doc.id) is None:
                    return {"id": doc.id, "deleted": True, "status": "deleted"}
            time.sleep(0.1)
        self.worker.wake()
        return {"id": doc.id, "deleted": False, "status": "deleting"}

    def has_documents(self, tenant: str) -> bool:
        """Whether the tenant has a searchable document (the chat says "I don't know" only then)."""
        with self.db.session() as session:
            return repo.count_documents(session=session, tenant=tenant, statuses=("ready",)) > 0

    def kb_version(self, tenant: str) -> str:
        """Changes whenever the tenant's knowledge base does (the response cache keys on it)."""
        with self.db.session() as session:
            count = repo.count_documents(session=session, tenant=tenant, statuses=("ready",))
            latest = repo.latest_update(session=session, tenant=tenant)
        return f"{count}:{latest.isoformat() if latest else '-'}"

    def kb_fingerprint(self, tenant: str) -> str:
        """The tenant's ready documents, as ids and content: the same fingerprint means the same knowledge base
        (an evaluation run records it; the release gate compares it with the current one)."""
        with self.db.session() as session:
            docs, offset = [], 0
            while page := repo.list_documents(session=session, tenant=tenant, status="ready", limit=500,
                                              offset=offset):
                docs += page
                offset += len(page)
        digest = hashlib.sha256()
        for doc in sorted(docs, key=lambda d: d.id):
            digest.update(f"{doc.id}:{doc.content_hash}:{doc.embedding_model}\n".encode())
        return f"{len(docs)}:{digest.hexdigest()[:16]}"

    def document_count(self, *, tenant: str) -> int:
        with self.db.session() as session:
            return repo.count_documents(session=session, tenant=tenant)

    def knowledge_bases(self, principal: Principal, tenant: str) -> list[dict]:
        self.authorize(principal, tenant, "retrieval")
        with self.db.session() as session:
            names = repo.kb_names(session=session, tenant=tenant)
        return [{"kb": n, "knowledge_id": knowledge_id(tenant, n)} for n in names]

    # -- retrieval ----------------------------------------------------------------------------------------------

    def _scope(self, tenant: str, *, kb: str | None, condition: dict | None) -> set[str] | None:
        """Document ids a search may return (None = all of the tenant's ready documents)."""
        if kb is None and condition is None:
            return None
        with self.db.session() as session:
            docs = repo.list_documents(session=session, tenant=tenant, kb=kb, status="ready", limit=100_000)
        out = set()
        for d in docs:
            meta = {**d.doc_metadata, "document_id": d.id, "title": d.title, "filename": d.filename, "kb": d.kb,
                    "content_type": d.content_type, "created_at": d.created_at.isoformat(),
                    "updated_at": d.updated_at.isoformat()}
            if condition is None or metadata_filter.matches(meta, condition):
                out.add(d.id)
        return out

    async def search(self, principal: Principal, tenant: str, query: str, *, top_k: int = 5,
                     kb: str | None = None, metadata_condition: dict | None = None,
                     min_score: float = 0.0, permission: str = "retrieval", turn: bool = False) -> list[Hit]:
        """`turn`: part of a chat turn, which already holds the tenant's model-call slot (pipeline.py); any other
        search takes one here, before any thread-pool work (a 429 over `limits.model_calls`)."""
        store = self.store_for(principal, tenant, permission=permission)
        if not query.strip():
            raise Invalid("the query is empty", code="empty_query")
        if metadata_condition is not None:
            metadata_filter.validate(metadata_condition)
        kb = check_kb(kb) if kb is not None else None

        def run() -> list[Hit]:
            scope = self._scope(tenant, kb=kb, condition=metadata_condition)
            return self.retrieval.search(store, query, top_k=top_k, document_ids=scope)

        slot = self.inflight.acquire(tenant, stream=False) if self.inflight is not None and not turn else None
        began = time.perf_counter()
        try:
            with span("atrium.retrieve", {TENANT: tenant, "atrium.top_k": top_k}):
                hits = await asyncio.to_thread(run)
        finally:
            if slot is not None:
                slot.release()
        self.metrics.retrieval(tenant=tenant, seconds=time.perf_counter() - began)
        return [h for h in hits if h.score >= min_score]

    async def retrieve(self, *, principal: Principal, tenant: str, query: str, top_k: int = 5,
                       kb: str | None = None, min_score: float | None = None) -> list[Citation]:
        """The chat's retriever: only relevant passages (see retrieval.is_relevant); none = "I don't know".
        `min_score`: a lower threshold, for one part of a question that already found passages (the grounded
        answer then keeps only the statements that answer it)."""
        # Grounding a chat answer is part of chatting: a key with only the `chat` scope may do it.
        hits = await self.search(principal, tenant, query, top_k=top_k, kb=kb, permission="chat", turn=True)
        threshold = self.min_score if min_score is None else min(min_score, self.min_score)
        hits = [h for h in hits if is_relevant(query, h, min_score=threshold)]
        return [Citation(chunk_id=h.id, document_id=h.document_id, title=h.title, quote=h.text, score=h.score,
                         page=h.page, section=h.section) for h in hits]

    def document_titles(self, tenant: str, ids: set[str]) -> dict[str, KbDocument]:
        with self.db.session() as session:
            return {i: d for i in ids if (d := repo.get_document(session=session, tenant=tenant, document_id=i))}

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start_worker(self) -> None:
        """Background ingestion in this process; resumes jobs a dead process left unfinished."""
        with self.db.session() as session:
            warm = any(repo.count_documents(session=session, tenant=t) for t in self.registry.ids())
        self.worker.start(warm=warm)

    def close(self) -> None:
        self.worker.stop()
        self.store.close()
