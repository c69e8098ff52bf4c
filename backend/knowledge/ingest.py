"""The ingestion worker: queued -> parsing -> embedding -> ready | failed, with the job state in SQL.

Each job is claimed with a lease (one UPDATE of a row taken FOR UPDATE SKIP LOCKED), embedded in batches, and
checkpointed after every batch (`chunks_done`). Chunk ids are deterministic, so a batch re-sent after a crash
overwrites rather than duplicates; a process killed mid-job leaves a lease that a restarted process on the same
host reclaims at once (the holder's pid is dead), or any worker after the lease expires. Leases are timed by
the database's clock (repositories/documents.py). A worker asked to stop finishes the batch it is embedding,
checkpoints it and hands the job back, claimable at once by another worker.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.db.engine import Database
from backend.db.models import KbDocument
from backend.db.repositories import documents as repo
from backend.errors import AtriumError, Conflict
from backend.governance.metrics import NoMetrics
from backend.knowledge.chunk import Chunk, chunk_blocks
from backend.knowledge.embed.base import Embedder
from backend.knowledge.parse import parse
from backend.knowledge.stores.base import ChunkRecord, TenantStore, VectorStore, chunk_id
from backend.tracing import TENANT, span

log = logging.getLogger("atrium.knowledge")
MAX_ATTEMPTS = 3


@dataclass
class IngestConfig:
    batch_size: int = 32
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    lease_s: float = 60.0
    poll_s: float = 2.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class IngestWorker:
    def __init__(self, *, db: Database, store: VectorStore, embedder: Embedder, config: IngestConfig | None = None,
                 on_progress: Callable[[KbDocument, int], None] | None = None,
                 tenants: frozenset[str] | None = None, cap: Callable[[str], int | None] | None = None) -> None:
        self.db = db
        self.cap = cap  # a tenant's most jobs running at once over every worker (tenants.yaml limits.ingestion_jobs)
        # The tenants whose jobs this worker takes (its process's deployment groups); None: every tenant's. The
        # other groups' jobs stay queued for their own workers, whose embedding model and store may differ.
        self.tenants = tenants
        self.store = store
        self.embedder = embedder
        self.config = config or IngestConfig()
        self.on_progress = on_progress  # (document, chunks embedded in this step)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warm = False
        self.metrics: NoMetrics = NoMetrics()  # the container's: jobs by outcome, their run time, chunks embedded

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self, *, warm: bool = False) -> None:
        """Run jobs in a background thread; `warm` loads the embedding model first (when there is a
        knowledge base to query, so the first question does not wait for torch to load)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._warm = warm
        self._thread = threading.Thread(target=self._loop, name="atrium-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def resume(self) -> int:
        """Make unfinished jobs claimable now when their holder was a process of this host that died."""
        host = socket.gethostname()
        resumed = 0
        with self.db.session() as session:
            for doc in repo.jobs_to_resume(session=session, tenants=self.tenants):
                holder = doc.claimed_by
                if holder is None:
                    resumed += 1
                    continue
                h, _, rest = holder.partition(":")
                pid = rest.partition(":")[0]
                if h == host and pid.isdigit() and not _pid_alive(int(pid)):
                    repo.expire_lease(session=session, document_id=doc.id, holder=holder)
                    resumed += 1
        if resumed:
            log.info("resuming unfinished ingestion jobs", extra={"jobs": resumed})
            self.wake()
        return resumed

    def _loop(self) -> None:
        self.resume()
        if self._warm:
            try:
                self.embedder.warm()  # torch + weights load here, not on the first user's request
            except Exception:
                log.exception("embedding model failed to load")
        while not self._stop.is_set():
            try:
                if self.run_once() is not None:
                    continue
            except Exception:  # keep the worker alive whatever one job does
                log.exception("ingestion worker error")
            self._wake.wait(self.config.poll_s)
            self._wake.clear()

    # -- jobs ---------------------------------------------------------------------------------------------------

    def run_once(self, only: set[str] | None = None) -> KbDocument | None:
        with self.db.session() as session:
            doc = repo.claim_next_job(session=session, worker_id=self.worker_id, lease_s=self.config.lease_s,
                                      only=only, tenants=self.tenants, cap=self.cap)
        if doc is None:
            return None
        log.info("ingestion job claimed", extra={"tenant": doc.tenant, "document_id": doc.id, "status": doc.status,
                                                 "chunks_done": doc.chunks_done, "attempt": doc.attempts,
                                                 "worker": self.worker_id})
        stopped, began, done_before, deleting = False, time.perf_counter(), doc.chunks_done, doc.status == "deleting"
        with span("atrium.ingest.job", {TENANT: doc.tenant, "atrium.document_id": doc.id,
                                        "atrium.attempt": doc.attempts, "atrium.job": doc.status}) as job_span:
            try:
                if deleting:
                    self._purge(doc)
                else:
                    self._ingest(doc)
            except _Stopped:
                stopped = True
            finally:
                with self.db.session() as session:
                    if stopped:
                        repo.hand_back(session=session, document_id=doc.id, worker_id=self.worker_id)
                    else:
                        repo.release_lease(session=session, document_id=doc.id, worker_id=self.worker_id)
                    after = session.get(KbDocument, doc.id) if self.metrics.enabled else None
            if self.metrics.enabled:
                outcome = ("handed_back" if stopped else "deleted" if deleting or after is None
                           else after.status if after.status in ("ready", "failed") else "retry")
                chunks = max(0, (after.chunks_done if after is not None else 0) - done_before)
                self.metrics.ingestion_job(tenant=doc.tenant, outcome=outcome, seconds=time.perf_counter() - began,
                                           chunks=0 if deleting else chunks)
                job_span.set_attribute("atrium.outcome", outcome)
        if stopped:
            log.info("stopping: ingestion job handed back", extra={"document_id": doc.id, "worker": self.worker_id})
        return doc

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask the worker to stop after the batch in hand (safe from a signal handler: only sets events)."""
        self._stop.set()
        self._wake.set()

    def run_forever(self, *, warm: bool = True) -> None:
        """Run jobs in the calling thread until request_stop() (the `atrium worker` process)."""
        self._warm = warm
        self._loop()

    def drain(self, only: set[str]) -> None:
        """Process the given jobs in this thread until none is left unfinished (the CLI's path)."""
        while True:
            if self.run_once(only=only) is not None:
                continue
            with self.db.session() as session:
                pending = [d for d in repo.jobs_to_resume(session=session, tenants=self.tenants) if d.id in only]
            if not pending:
                return
            self._stop.wait(self.config.poll_s)  # another process holds a lease: wait for it
            self.resume()

    def _save(self, doc: KbDocument, **changes) -> KbDocument:
        with self.db.session() as session:
            current = session.get(KbDocument, doc.id)
            if current is None:  # deleted meanwhile
                raise _Gone()
            if current.status == "deleting" and changes.get("status") != "deleting":
                raise _Gone()
            if current.claimed_by not in (None, self.worker_id):
                # Our lease ran out (a batch slower than the lease) and another worker took the job: its
                # progress is the document's now; a write of ours would overwrite it.
                raise _Gone()
            for key, value in changes.items():
                setattr(current, key, value)
            return repo.save_document(session=session, doc=current)

    def _heartbeat(self, doc: KbDocument) -> None:
        with self.db.session() as session:
            if not repo.renew_lease(session=session, document_id=doc.id, worker_id=self.worker_id,
                                    lease_s=self.config.lease_s):
                raise _Gone()

    def chunks_of(self, doc: KbDocument, data: bytes) -> tuple[str | None, list[Chunk]]:
        """(the document's own title, if it has one; its chunks). Deterministic: a resumed job gets the same."""
        parsed = parse(data, doc.content_type)
        return parsed.title, chunk_blocks(parsed.blocks, count_tokens=self.embedder.count_tokens,
                                          max_tokens=self.config.chunk_tokens, overlap=self.config.chunk_overlap)

    def _ingest(self, doc: KbDocument) -> None:
        store = TenantStore(self.store, doc.tenant)  # the job's own tenant, recorded at upload
        try:
            doc = self._save(doc, status="parsing", error=None, progress=max(doc.progress, 0.01))
            with self.db.session() as session:
                data = repo.get_blob(session=session, tenant=doc.tenant, document_id=doc.id)
            if data is None:
                raise AtriumError("the uploaded file is missing", code="blob_missing")
            own_title, chunks = self.chunks_of(doc, data)
            if own_title and doc.doc_metadata.get("title_source") == "filename":
                # No title was given at upload: cite the document by its own (first heading, PDF title).
                doc = self._save(doc, title=own_title[:300], doc_metadata={**doc.doc_metadata,
                                                                            "title_source": "document"})
            if doc.chunk_total and doc.chunk_total != len(chunks):
                # Chunking settings changed between attempts: start over cleanly.
                store.delete([chunk_id(doc.id, i) for i in range(max(doc.chunk_total, doc.chunks_done))])
                doc = self._save(doc, chunks_done=0)
            self._check_model(doc.tenant)
            doc = self._save(doc, status="embedding", chunk_total=len(chunks), embedding_model=self.embedder.name)
            done = min(doc.chunks_done, len(chunks))
            batch = max(1, self.config.batch_size)
            while done < len(chunks):
                part = chunks[done:done + batch]
                vectors = self.embedder.embed([c.embed_text(doc.title) for c in part])
                store.upsert([
                    ChunkRecord(id=chunk_id(doc.id, c.index), document_id=doc.id, kb=doc.kb, chunk_index=c.index,
                                title=doc.title, text=c.text, section=c.section, page=c.page, vector=v,
                                keyword_text=c.embed_text(doc.title))
                    for c, v in zip(part, vectors, strict=True)
                ])
                done += len(part)
                doc = self._save(doc, chunks_done=done, progress=round(0.05 + 0.95 * done / len(chunks), 4))
                self._heartbeat(doc)
                log.info("ingestion progress", extra={"tenant": doc.tenant, "document_id": doc.id,
                                                      "chunks_done": done, "chunk_total": len(chunks)})
                if self.on_progress:
                    self.on_progress(doc, len(part))
                if self._stop.is_set() and done < len(chunks):
                    raise _Stopped()
            doc, older = self._ready_retiring_older_versions(doc)
            log.info("document ready", extra={"tenant": doc.tenant, "document_id": doc.id, "chunks": len(chunks)})
            for old in older:
                self._purge(old)
        except _Gone:
            return
        except _Stopped:
            raise
        except AtriumError as exc:
            # The user's file or configuration (4xx) will not get better by retrying; a provider or store
            # outage (5xx) may.
            transient = exc.status_code >= 500 and doc.attempts < MAX_ATTEMPTS
            self._fail(doc, store, exc.message, final=not transient)
        except Exception as exc:
            final = doc.attempts >= MAX_ATTEMPTS
            self._fail(doc, store, f"{type(exc).__name__}: {str(exc)[:300]}", final=final)
            if not final:
                log.warning("ingestion failed, will retry", extra={"document_id": doc.id, "error": str(exc)})

    def _fail(self, doc: KbDocument, store: TenantStore, reason: str, *, final: bool) -> None:
        if not final:
            # Keep the job (and its checkpoint); retry after a back-off, showing why in the meantime.
            with self.db.session() as session:
                repo.defer_job(session=session, document_id=doc.id, worker_id=self.worker_id,
                               delay_s=min(300.0, 5.0 * 3 ** max(0, doc.attempts - 1)),
                               reason=f"retrying after: {reason}")
            return
        try:
            with self.db.session() as session:
                current = session.get(KbDocument, doc.id)
            if current is not None and current.claimed_by not in (None, self.worker_id):
                return  # another worker took the job over: the chunks it wrote are not ours to delete
            total = max(current.chunk_total, current.chunks_done) if current else 0
            store.delete([chunk_id(doc.id, i) for i in range(total)])  # no orphans from a failed job
            self._save(doc, status="failed", error=reason, chunks_done=0, progress=0.0)
        except _Gone:
            return
        log.warning("document failed", extra={"tenant": doc.tenant, "document_id": doc.id, "reason": reason})
        if self.on_progress:
            self.on_progress(doc, 0)

    def _check_model(self, tenant: str) -> None:
        with self.db.session() as session:
            row = repo.get_embedding_model(session=session, tenant=tenant) or repo.set_embedding_model(
                session=session, tenant=tenant, model=self.embedder.name, dimension=self.embedder.dimension)
            if row is not None and row.model != self.embedder.name:
                raise Conflict(f"this knowledge base was embedded with {row.model}, but the configured model is "
                               f"{self.embedder.name}; vectors of two models cannot be mixed. Set "
                               f"ATRIUM_EMBEDDING_MODEL={row.model}, or delete all documents and upload them again",
                               code="embedding_model_mismatch")

    def _ready_retiring_older_versions(self, doc: KbDocument) -> tuple[KbDocument, list[KbDocument]]:
        """Ready, and in the same transaction every older version marked `deleting`: a new version replaces
        documents of the same file name — or the same title, when the uploader gave one — in the same knowledge
        base once it is ready (never before: no gap in answers), and nobody ever lists both. The older versions'
        vectors and rows are purged afterwards (a crash in between leaves rows `deleting`, never listed)."""
        with self.db.session() as session:
            same = {d.id: d for d in repo.find_by_filename(session=session, tenant=doc.tenant, kb=doc.kb,
                                                           filename=doc.filename, exclude=doc.id)}
            if "title_source" not in doc.doc_metadata:  # a title the uploader chose
                same.update({d.id: d for d in repo.find_by_title(session=session, tenant=doc.tenant, kb=doc.kb,
                                                                 title=doc.title, exclude=doc.id)})
            older = [d for d in same.values()
                     if d.created_at < doc.created_at or (d.created_at == doc.created_at and d.id < doc.id)]
            current = session.get(KbDocument, doc.id)
            if current is None or current.status == "deleting" or current.claimed_by not in (None, self.worker_id):
                raise _Gone()  # deleted or taken over meanwhile (as _save)
            current.status, current.progress = "ready", 1.0
            for old in older:
                old.status = "deleting"
                session.add(old)
            saved = repo.save_document(session=session, doc=current)  # commits the whole session
        return saved, older

    def _purge(self, doc: KbDocument) -> None:
        """Delete a document's vectors, then its row (in that order: a crash in between is retried)."""
        store = TenantStore(self.store, doc.tenant)
        total = max(doc.chunk_total, doc.chunks_done)
        store.delete([chunk_id(doc.id, i) for i in range(total)])
        with self.db.session() as session:
            repo.remove_document(session=session, tenant=doc.tenant, document_id=doc.id)
            if repo.count_documents(session=session, tenant=doc.tenant, statuses=repo.LIVE + ("failed",)) == 0:
                repo.clear_embedding_model(session=session, tenant=doc.tenant)
        log.info("document deleted", extra={"tenant": doc.tenant, "document_id": doc.id})


class _Stopped(Exception):
    """The worker is stopping: the batch in hand is checkpointed, the job goes back to the queue."""


class _Gone(Exception):
    """The document was deleted or taken over while we worked on it: stop quietly."""
