"""POST /api/t/{tenant}/chat: one chat turn, as JSON or as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from backend.api.deps import ChatAccess, ServicesDep
from backend.api.openai_models import GROUNDING
from backend.chat.types import MAX_MESSAGE_CHARS, ChatRequest, TurnResult
from backend.errors import AtriumError

router = APIRouter(prefix="/api/t/{tenant}", tags=["chat"])


class HistoryItem(BaseModel):
    """An earlier turn. Only the user's and the assistant's own turns: the tenant's prompt is the one system
    message, so a caller cannot slip in instructions as `system`."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    # Length-capped strings also refuse a lone UTF-16 surrogate ("\\ud800" in JSON): app.py words that error.
    content: str = Field(max_length=MAX_MESSAGE_CHARS)
    finish_reason: Literal["stop", "length"] | None = Field(
        None, description="an assistant turn's `finish_reason` as its answer gave it: after `length` (an answer cut "
                          "at the length limit) as the last item, the message `continue` continues that answer")


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    assistant: str
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    history: list[HistoryItem] = Field(default_factory=list, max_length=200)
    stream: StrictBool = False  # "yes" is not a boolean: refused, not read as true


class CitationPublic(BaseModel):
    """A passage of the tenant's knowledge base the answer draws on."""

    chunk_id: str
    document_id: str
    title: str = Field(description="the document's title")
    quote: str = Field(description="the passage")
    score: float = Field(description="relevance, 0 to 1")
    page: int | None = Field(description="its page, in a PDF")
    section: str | None = Field(description="the heading it is under")


class TurnUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class ChatAnswer(BaseModel):
    """One turn's answer (TurnResult.public()); with `stream: true`, the `data` of the closing `done` event."""

    answer: str = Field(description="ends with the prompt's sign-off, when it has one")
    citations: list[CitationPublic] = Field(description="empty when nothing in the knowledge base was relevant")
    model: str = Field(description="the model that answered (empty when none was called)")
    tier: str
    prompt_name: str
    prompt_version: int | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: int
    cached: bool = Field(description="answered from the tenant's answer cache")
    route_reason: str | None = Field(description="why this tier was chosen")
    fallback_from: str | None = Field(description="the model that failed before this one answered")
    downgraded_from: str | None = Field(default=None, description="the tier routed, when a spent budget had the "
                                                                  "answer written by a cheaper one (on_budget)")
    turn_id: int | None = Field(description="the recorded turn (feedback refers to it)")
    warnings: list[str]
    finish_reason: str = Field(description="`stop`, or `length` when max_tokens cut the answer")
    signoff: str = Field(description="the sign-off appended to `answer` (empty when none)")
    grounding: dict[str, Any] | None = Field(default=None, description=GROUNDING)
    continues: bool = Field(description="the answer is the rest of the previous one, cut at the length limit: it "
                                        "starts where that one stopped (append it to that answer)")
    usage: TurnUsage


# `responses` documents what the route returns (TurnResult.public()) without converting each answer again.
@router.post("/chat", responses={200: {"model": ChatAnswer, "description": "the answer (JSON), or with "
                                                                           "`stream: true` server-sent events: "
                                                                           "`token` ({text}), then `done` (the "
                                                                           "answer) or `error` ({error, detail})"}})
async def chat(body: ChatIn, ctx: ChatAccess, services: ServicesDep):
    last = body.history[-1] if body.history else None
    req = ChatRequest(tenant=ctx.tenant, assistant=body.assistant, message=body.message,
                      history=[h.model_dump(include={"role", "content"}) for h in body.history], channel="api",
                      last_answer_cut=last is not None and last.role == "assistant" and last.finish_reason == "length")
    if not body.stream:
        result = await services.chat.run(ctx.principal, req)
        return result.public()

    services.chat.authorize(ctx.principal, ctx.tenant, body.assistant)  # fail before the stream starts
    stream = services.chat.stream(ctx.principal, req)
    # The first item comes after the quota check: a refusal is still a plain HTTP 429 with Retry-After.
    first = await anext(stream)

    async def events() -> AsyncIterator[str]:
        try:
            item = first
            while True:
                if isinstance(item, TurnResult):
                    yield f"event: done\ndata: {json.dumps(item.public())}\n\n"
                    break
                yield f"event: token\ndata: {json.dumps({'text': item})}\n\n"
                item = await anext(stream)
        except AtriumError as exc:
            yield f"event: error\ndata: {json.dumps({'error': exc.code, 'detail': exc.message})}\n\n"
        finally:
            await stream.aclose()

    return StreamingResponse(events(), media_type="text/event-stream")
