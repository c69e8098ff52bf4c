"""Build the knowledge service from settings (called once by backend.container.build_services)."""

from __future__ import annotations

from backend.db.engine import Database
from backend.governance.audit import AuditLog
from backend.knowledge.embed import make_embedder
from backend.knowledge.ingest import IngestConfig, IngestWorker
from backend.knowledge.retrieval import Retrieval
from backend.knowledge.service import KnowledgeService
from backend.knowledge.stores import make_store
from backend.settings import Settings
from backend.tenants import TenantRegistry


def build_knowledge(settings: Settings, *, db: Database, registry: TenantRegistry, audit: AuditLog,
                    embedding_list: list[dict] | None = None) -> KnowledgeService:
    embedder = make_embedder(settings.embedding_model, embedding_list=embedding_list)
    if hasattr(embedder, "batch_size"):
        embedder.batch_size = settings.embed_batch
    store = make_store(settings)
    worker = IngestWorker(db=db, store=store, embedder=embedder, config=IngestConfig(
        batch_size=settings.embed_batch, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap,
        lease_s=settings.ingest_lease_s),
        # Only the jobs of the tenants this process serves (ATRIUM_DEPLOYMENT_GROUPS); None: every tenant's.
        tenants=None if registry.served_groups is None else frozenset(registry.ids()),
        cap=lambda tenant: registry.limits(tenant).ingestion_jobs)
    return KnowledgeService(db=db, registry=registry, audit=audit, store=store,
                            retrieval=Retrieval(embedder, mode=settings.retrieval_mode), worker=worker,
                            max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
                            min_score=settings.retrieval_min_score)
