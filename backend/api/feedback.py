"""GET /api/t/{tenant}/feedback: what users thought of the answers (thumbs up/down in the chat), for the
prompt editors and tenant admins who improve the assistants: counts per assistant and prompt version, and the
latest rated exchanges with the users' comments (not who rated them)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from backend.api.deps import PromptsWrite, ServicesDep
from backend.errors import NotFound

router = APIRouter(prefix="/api/t/{tenant}", tags=["feedback"])


@router.get("/feedback")
async def feedback(ctx: PromptsWrite, services: ServicesDep, assistant: str | None = None,
                   rating: Literal["helpful", "not_helpful"] | None = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    cfg = services.registry.get(ctx.tenant)
    if assistant is not None and (cfg is None or cfg.assistant(assistant) is None):
        names = ", ".join(a.name for a in cfg.assistants) if cfg else ""
        raise NotFound(f"tenant {ctx.tenant!r} has no assistant {assistant!r}; it has: {names}",
                       code="assistant_not_found")
    assert services.conversations is not None
    value = None if rating is None else int(rating == "helpful")
    return await asyncio.to_thread(services.conversations.feedback_report, ctx.principal, ctx.tenant,
                                   assistant=assistant, value=value, limit=limit)
