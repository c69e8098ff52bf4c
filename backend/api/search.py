"""POST /api/t/{tenant}/search: the ranked passages, by the same retrieval the chat uses."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import RetrievalAccess, ServicesDep
from backend.api.knowledge_models import SearchResults
from backend.api.params import KB_NAME, NOT_BLANK, Integer, Number
from backend.knowledge.service import hit_public

router = APIRouter(prefix="/api/t/{tenant}", tags=["knowledge"])


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    query: str = Field(min_length=1, max_length=4000, json_schema_extra={"pattern": NOT_BLANK})  # else empty_query
    top_k: Integer = Field(5, ge=1, le=50)
    kb: str | None = Field(None, json_schema_extra=KB_NAME)
    min_score: Number = Field(0.0, ge=0.0, le=1.0)


# `responses` documents the dict the route returns without converting each answer again.
@router.post("/search", responses={200: {"model": SearchResults}})
async def search(body: SearchIn, ctx: RetrievalAccess, services: ServicesDep):
    knowledge = services.knowledge
    if body.kb is not None:  # a typo must not look like "nothing relevant"
        await asyncio.to_thread(knowledge.existing_kb, ctx.principal, ctx.tenant, body.kb)
    hits = await knowledge.search(ctx.principal, ctx.tenant, body.query, top_k=body.top_k, kb=body.kb,
                                  min_score=body.min_score)
    return {"query": body.query, "mode": knowledge.retrieval.mode, "relevance_threshold": knowledge.min_score,
            "results": [hit_public(h) for h in hits]}
