"""OpenAI-compatible API: GET /api/t/{tenant}/v1/models, POST /api/t/{tenant}/v1/chat/completions.

`model` is an assistant name (the tenant's prompt and knowledge base) or a tier alias (a plain completion).
Same tenant guard, quotas, routing, cache and usage records as the chat; errors use OpenAI's shape
(app.py routes every error under these paths through `openai_error`). Works with the official SDK:
OpenAI(base_url=".../api/t/sales/v1", api_key="atr_...", default_headers={"X-Tenant-ID": "sales"}).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import ChatAccess, ServicesDep
from backend.api.openai_errors import openai_error_body
from backend.chat import ChatRequest, TurnResult
from backend.errors import AtriumError, Invalid, NotFound

router = APIRouter(prefix="/api/t/{tenant}/v1", tags=["openai-compatible"])

class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI parameters are accepted and ignored

    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=100_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=100_000)
    n: int = Field(1, ge=1)


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")
    return content or ""


@router.get("/models")
def list_models(ctx: ChatAccess, services: ServicesDep) -> dict:
    cfg = services.registry.get(ctx.tenant)
    assert cfg is not None  # the tenant guard only lets known tenants through
    data = [{"id": a.name, "object": "model", "created": 0, "owned_by": ctx.tenant, "kind": "assistant",
             "title": a.title, "description": a.description} for a in cfg.assistants]
    live = set(services.llm.tiers())
    data += [{"id": t, "object": "model", "created": 0, "owned_by": ctx.tenant, "kind": "tier",
              "models": services.llm.live.live.get(t, [])} for t in cfg.model_policy.allowed_tiers if t in live]
    return {"object": "list", "data": data}


def _request(body: ChatCompletionIn, tenant: str, services: Any) -> ChatRequest:
    cfg = services.registry.get(tenant)
    if body.n != 1:
        raise Invalid("only n=1 is supported", code="unsupported_parameter")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}
                for m in body.messages]
    max_tokens = body.max_completion_tokens or body.max_tokens
    if cfg.assistant(body.model) is not None:
        if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
            raise Invalid("the last message must be a non-empty user message", code="invalid_messages")
        # The tenant's prompt is the system prompt: a caller's system messages do not replace it.
        history = [m for m in messages[:-1] if m["role"] in ("user", "assistant")]
        return ChatRequest(tenant=tenant, assistant=body.model, message=messages[-1]["content"],
                           history=history, channel="openai")
    live = set(services.llm.tiers())
    if body.model in cfg.model_policy.allowed_tiers and body.model in live:
        return ChatRequest(tenant=tenant, assistant="", message="", channel="openai", tier=body.model,
                           messages=messages, temperature=body.temperature, max_tokens=max_tokens)
    available = [a.name for a in cfg.assistants] + [t for t in cfg.model_policy.allowed_tiers if t in live]
    raise NotFound(f"The model {body.model!r} does not exist for tenant {tenant!r}; available: "
                   f"{', '.join(available)}", code="model_not_found")


def _atrium(result: TurnResult) -> dict[str, Any]:
    return {"model": result.model, "tier": result.tier, "cached": result.cached, "cost_usd": result.cost_usd,
            "route_reason": result.route_reason, "fallback_from": result.fallback_from,
            "prompt_version": result.prompt_version, "warnings": result.warnings, "turn_id": result.turn_id,
            "citations": [{"document_id": c.document_id, "title": c.title, "quote": c.quote, "page": c.page,
                           "score": c.score} for c in result.citations]}


def _usage(result: TurnResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionIn, ctx: ChatAccess, services: ServicesDep):
    req = _request(body, ctx.tenant, services)
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.stream:
        result = await services.chat.run(ctx.principal, req)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer},
                         "finish_reason": "stop"}],
            "usage": _usage(result), "atrium": _atrium(result),
        }, headers={"x-atrium-model": result.model, "x-atrium-cached": str(result.cached).lower()})

    stream = services.chat.stream(ctx.principal, req)
    # Pull the first item before answering: a refusal (quota, tier, prompt) is still a proper HTTP error.
    first = await anext(stream)
    include_usage = bool((body.stream_options or {}).get("include_usage"))

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(data)}\n\n"

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        try:
            item = first
            while True:
                if isinstance(item, TurnResult):
                    yield chunk({}, "stop", atrium=_atrium(item))
                    if include_usage:
                        data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                                "choices": [], "usage": _usage(item)}
                        yield f"data: {json.dumps(data)}\n\n"
                    break
                yield chunk({"content": item})
                item = await anext(stream)
        except AtriumError as exc:  # after the headers went out: OpenAI streams errors as an event
            yield f"data: {json.dumps(openai_error_body(exc.status_code, exc.code, exc.message))}\n\n"
        except StopAsyncIteration:
            pass
        finally:
            await stream.aclose()
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
