"""Tenant-scoped retrieval: dense (vector) search, optionally fused with keyword (FTS5/BM25) search by
reciprocal rank fusion. bench/retrieval_quality.py measures both on the demo set (bench/README.md).

Ranking follows the fusion; the score reported for every result is its cosine similarity to the query
(0..1), so thresholds (the chat's "I don't know", Dify's score_threshold) mean the same in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.knowledge.embed.base import Embedder
from backend.knowledge.stores.base import Hit, TenantStore
from backend.knowledge.text import term_coverage
from backend.tracing import TENANT, span

Mode = Literal["hybrid", "dense"]
# A passage whose cosine similarity is below the threshold still counts when it contains most of the
# question's words and is not unrelated (bench/README.md: 93% of answerable questions answered, 87% of
# other departments' questions refused, vs 74% / 87% for the similarity threshold alone).
KEYWORD_FLOOR = 0.2
KEYWORD_COVERAGE = 0.6


def is_relevant(query: str, hit: Hit, *, min_score: float) -> bool:
    if hit.score >= min_score:
        return True
    if hit.score < KEYWORD_FLOOR:
        return False
    return term_coverage(query, f"{hit.title} {hit.section or ''} {hit.text}") >= KEYWORD_COVERAGE


def rrf(rankings: list[list[Hit]], *, k: int = 60) -> list[tuple[Hit, float]]:
    """Reciprocal rank fusion: sum over lists of 1 / (k + rank)."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            first.setdefault(hit.id, hit)
    return sorted(((first[i], s) for i, s in scores.items()), key=lambda pair: (-pair[1], pair[0].id))


@dataclass
class Citation:
    """A passage the chat cites (title, page/section, the quoted text)."""

    chunk_id: str
    document_id: str
    title: str
    quote: str
    score: float
    page: int | None = None
    section: str | None = None


class Retrieval:
    def __init__(self, embedder: Embedder, *, mode: Mode = "hybrid", candidates: int = 20, rrf_k: int = 60) -> None:
        self.embedder = embedder
        self.mode = mode
        self.candidates = candidates
        self.rrf_k = rrf_k

    def embed_query(self, query: str) -> list[float]:
        return self.embedder.embed([query])[0]

    def search(self, store: TenantStore, query: str, *, top_k: int = 5, document_ids: set[str] | None = None,
               mode: Mode | None = None) -> list[Hit]:
        """Blocking: call it from a worker thread (asyncio.to_thread)."""
        # the tenant on each span: a trace backend filtering spans by `atrium.tenant` finds these too
        with span("atrium.embed", {"gen_ai.operation.name": "embeddings", TENANT: store.tenant}):
            vector = self.embed_query(query)
        with span("atrium.search", {"atrium.retrieval_mode": mode or self.mode, TENANT: store.tenant}):
            return self.search_vector(store, query, vector, top_k=top_k, document_ids=document_ids, mode=mode)

    def search_vector(self, store: TenantStore, query: str, vector: list[float], *, top_k: int,
                      document_ids: set[str] | None = None, mode: Mode | None = None) -> list[Hit]:
        mode = mode or self.mode
        pool = max(self.candidates, top_k)
        dense = store.query(vector, top_k=pool, document_ids=document_ids)
        if mode == "dense" or not store.supports_keyword:
            out = dense[:top_k]
        else:
            keyword = store.keyword(query, top_k=pool, document_ids=document_ids)
            fused = [hit for hit, _ in rrf([dense, keyword], k=self.rrf_k)][:top_k]
            known = {h.id: h.score for h in dense}
            missing = [h.id for h in fused if h.id not in known]
            known.update(store.similarity(vector, missing))
            out = []
            for hit in fused:
                hit.score = known.get(hit.id, 0.0)
                out.append(hit)
        for hit in out:
            hit.score = round(min(1.0, max(0.0, float(hit.score))), 4)
        return out
