"""POST /api/t/{tenant}/chat: one chat turn, as JSON or as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from backend.api.deps import ChatAccess, ServicesDep
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


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unsupported field is a 422, not ignored

    assistant: str
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    history: list[HistoryItem] = Field(default_factory=list, max_length=200)
    stream: StrictBool = False  # "yes" is not a boolean: refused, not read as true


@router.post("/chat")
async def chat(body: ChatIn, ctx: ChatAccess, services: ServicesDep):
    req = ChatRequest(tenant=ctx.tenant, assistant=body.assistant, message=body.message,
                      history=[h.model_dump() for h in body.history], channel="api")
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
