"""OpenAI-compatible API: GET /api/t/{tenant}/v1/models[/{id}], POST /api/t/{tenant}/v1/chat/completions.

`model` is an assistant name (the tenant's prompt and knowledge base) or a tier alias (a plain completion).
Same tenant guard, quotas, routing, cache and usage records as the chat; errors use OpenAI's shape
(app.py routes every error under these paths through `openai_error`). Works with the official SDK:
OpenAI(base_url=".../api/t/sales/v1", api_key="atr_...", default_headers={"X-Tenant-ID": "sales"}).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.responses import Response

from backend.api.deps import ChatAccess, ServicesDep, TenantContext, chat_access, get_services_dep, reject_unknown_query
from backend.api.fast_path import Declined, FastPathRoute, read_body
from backend.api.openai_errors import openai_error_body
from backend.api.openai_models import ChatCompletion, CompletionAnswer
from backend.api.params import Integer, IntegerOrNone, NumberOrNone
from backend.api.unicode import lone_surrogate_at
from backend.chat.types import MAX_MESSAGE_CHARS, ChatRequest, TurnResult
from backend.errors import AtriumError, Invalid, NotFound, Unavailable
from backend.ids import random_hex
from backend.llm.schema_limits import SchemaTooComplex, check_schema

# The chat completion's plain request skips FastAPI's dependency solving (backend/api/fast_path.py).
router = APIRouter(prefix="/api/t/{tenant}/v1", tags=["openai-compatible"], route_class=FastPathRoute)

# OpenAI parameters this endpoint cannot honour: refused with a 400 naming them, never silently dropped
# (a caller sending `tools` would otherwise get prose where it expects a tool call).
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs", "audio",
               "modalities", "prediction", "logit_bias", "verbosity", "web_search_options")
# Bookkeeping parameters that do not change the answer: accepted and not used. Any other unknown one is
# refused, as OpenAI does ("Unrecognized request argument"), rather than silently dropped.
ACCEPTED_UNUSED = ("metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key",
                   "safety_identifier")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
# Sampling parameters LiteLLM passes through unchanged: forwarded to the model as given.
FORWARDED = ("stop", "top_p", "seed", "presence_penalty", "frequency_penalty", "response_format", "user",
             "reasoning_effort")
# OpenAI's values and the higher ones LiteLLM maps for Claude 5.x and GPT-6; which a model takes is its own.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_NOT_INPUT = {"image_url": "image", "input_image": "image", "input_audio": "audio", "file": "file"}
SYSTEM_IGNORED = ("system messages are not used for assistant models: the tenant's prompt is the system prompt "
                  "(send them to a tier alias, e.g. model 'fast', for a plain completion)")


def _message_schema(schema: dict[str, Any]) -> None:
    """What the endpoint answers: "tool" messages and messages without content are taken only to be refused in
    words (`_check`: no tools are offered), so the schema does not offer them; a content part is text."""
    props = schema["properties"]
    props["role"]["enum"] = ["system", "developer", "user", "assistant"]
    text_part = {"type": "object", "required": ["text"],
                 "properties": {"type": {"enum": ["text"]}, "text": {"type": "string"}}}
    props["content"] = {"anyOf": [{"type": "string", "maxLength": MAX_MESSAGE_CHARS},
                                  {"type": "array", "items": text_part}], "title": "Content"}
    for name in ("tool_calls", "function_call"):  # refused unless empty
        props[name] = {"enum": [None, False, 0, "", [], {}], "description": "not supported: leave it out"}
    schema["required"] = ["role", "content"]


def _completion_schema(schema: dict[str, Any]) -> None:
    """`_check`'s rules as the schema states them: an unknown parameter is refused, OpenAI's unsupported ones
    unless empty, the bookkeeping ones taken and not used; response_format names a known type."""
    props = schema["properties"]
    for name in UNSUPPORTED:
        props[name] = {"enum": [None, False, 0, [], {}], "description": "not supported by this endpoint"}
    for name in ACCEPTED_UNUSED:
        props[name] = {"description": "accepted and not used"}
    props["response_format"] = {"anyOf": [
        {"type": "null"},
        {"type": "object", "properties": {"type": {"enum": ["text", "json_object"]}}},
        {"type": "object", "required": ["type", "json_schema"],
         "properties": {"type": {"const": "json_schema"}, "json_schema": {"type": "object"}}}]}
    schema["additionalProperties"] = False


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_message_schema)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: StrictBool = False


class ChatCompletionIn(BaseModel):
    # Unknown parameters are kept for `_check`, which refuses them by name or takes the bookkeeping ones.
    model_config = ConfigDict(extra="allow", json_schema_extra=_completion_schema)

    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=200)
    stream: StrictBool = False  # "yes" is not a boolean: refused, not read as true
    stream_options: StreamOptions | None = None
    temperature: NumberOrNone = Field(None, ge=0, le=2)
    max_tokens: IntegerOrNone = Field(None, ge=1, le=100_000)
    max_completion_tokens: IntegerOrNone = Field(None, ge=1, le=100_000)
    n: Integer = Field(1, ge=1, le=128, json_schema_extra={"maximum": 1})  # only 1: _check says so in words
    stop: str | list[str] | None = None
    top_p: NumberOrNone = Field(None, ge=0, le=1)
    # Within what JSON carries exactly (2**53): a client or schema validator reading numbers as doubles sees
    # 2**63 + 1 as 2**63 - 1, so a 64-bit bound would not be the one they check.
    seed: IntegerOrNone = Field(None, ge=-(2**53), le=2**53)
    presence_penalty: NumberOrNone = Field(None, ge=-2, le=2)
    frequency_penalty: NumberOrNone = Field(None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=256)
    reasoning_effort: str | None = Field(None, json_schema_extra={"enum": [*REASONING_EFFORTS, None]})


def _bad(message: str, param: str | None, code: str = "invalid_request") -> Invalid:
    return Invalid(message, code=code, extra={"param": param})


def _text(content: str | list[dict[str, Any]] | None, i: int) -> str:
    if not isinstance(content, list):
        return content or ""
    parts: list[str] = []
    for part in content:
        kind = part.get("type", "text")
        if isinstance(kind, str) and kind in _NOT_INPUT:  # {"type": {}} is refused below, not a TypeError
            raise _bad(f"{_NOT_INPUT[kind]} input is not supported by this endpoint (messages[{i}].content has a "
                       f"{kind!r} part); send text only", f"messages[{i}].content", "unsupported_content")
        if kind != "text" or not isinstance(part.get("text"), str):
            raise _bad(f"messages[{i}].content: unsupported content part {kind!r}; send "
                       f"{{'type': 'text', 'text': '...'}} parts or a string", f"messages[{i}].content",
                       "unsupported_content")
        parts.append(part["text"])
    return "".join(parts)


def _check(body: ChatCompletionIn, raw: bytes | None = None) -> None:
    """Refuse what cannot be honoured, naming the parameter (OpenAI's `param`) and what to send instead.

    `raw`: the UTF-8 JSON text the body was decoded from, when known. A lone surrogate in the decoded value comes
    only from a `\\ud800`-style escape or from the bytes ED A0..BF (json.loads decodes with 'surrogatepass'): a
    text with neither needs no search of every string."""
    if body.n != 1:
        raise _bad("only n=1 is supported", "n", "unsupported_parameter")
    extra = body.model_extra or {}
    for name in UNSUPPORTED:
        if extra.get(name) not in (None, False, [], {}):
            raise _bad(f"the parameter {name!r} is not supported by this endpoint; remove it", name,
                       "unsupported_parameter")
    for name in extra:
        if name not in UNSUPPORTED and name not in ACCEPTED_UNUSED:
            raise _bad(f"unrecognized request argument supplied: {name!r}; remove it", name[:100],
                       "unrecognized_parameter")
    if body.reasoning_effort is not None and body.reasoning_effort not in REASONING_EFFORTS:
        raise _bad(f"reasoning_effort {body.reasoning_effort!r} is not one of {', '.join(REASONING_EFFORTS)}",
                   "reasoning_effort", "invalid_value")
    kind = (body.response_format or {}).get("type", "text")
    if kind not in RESPONSE_FORMATS:
        raise _bad(f"response_format.type {kind!r} is not one of {', '.join(RESPONSE_FORMATS)}",
                   "response_format.type", "invalid_value")
    if kind == "json_schema" and not isinstance((body.response_format or {}).get("json_schema"), dict):
        raise _bad("response_format of type 'json_schema' needs a 'json_schema' object ({'name': ..., 'schema': "
                   "{...}})", "response_format.json_schema", "invalid_value")
    if body.response_format is not None:
        try:
            check_schema(body.response_format, where="response_format")
        except SchemaTooComplex as exc:
            raise _bad(f"{exc.where}: {exc}", exc.where, "schema_too_complex") from None
    maybe_surrogate = raw is None or b"\\ud" in raw or b"\\uD" in raw or b"\xed" in raw
    if maybe_surrogate and (where := lone_surrogate_at(body.model_dump(exclude_none=True))):
        raise _bad(f"{where} contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is not "
                   "valid Unicode text; send the character as a surrogate pair or remove it", where,
                   "invalid_encoding")
    for i, m in enumerate(body.messages):
        if m.role == "tool" or (m.model_extra or {}).get("tool_calls") or (m.model_extra or {}).get("function_call"):
            raise _bad(f"messages[{i}]: tool messages and assistant tool calls are not supported by this endpoint "
                       "(no tools are offered to the model)", f"messages[{i}]", "unsupported_parameter")
        if m.content is None:  # OpenAI allows it only beside tool calls, which this endpoint does not take
            raise _bad(f"messages[{i}].content is required (a string or text parts)", f"messages[{i}].content",
                       "invalid_value")
        text = _text(m.content, i)
        if len(text) > MAX_MESSAGE_CHARS:
            raise _bad(f"messages[{i}].content is {len(text)} characters; the limit is {MAX_MESSAGE_CHARS} per "
                       "message", f"messages[{i}].content", "message_too_long")


def _sampling(body: ChatCompletionIn) -> dict[str, Any] | None:
    params = {name: getattr(body, name) for name in FORWARDED if getattr(body, name) is not None}
    return params or None


def _request(body: ChatCompletionIn, tenant: str, services: Any, principal: Any,
             raw: bytes | None = None) -> ChatRequest:
    cfg = services.registry.get(tenant)
    _check(body, raw)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": _text(m.content, i)}
                for i, m in enumerate(body.messages)]
    max_tokens = body.max_completion_tokens or body.max_tokens
    if cfg.assistant(body.model) is not None:
        if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
            raise _bad("the last message must be a non-empty user message", "messages", "invalid_messages")
        # The tenant's prompt is the system prompt: a caller's system messages do not replace it (README).
        history = [m for m in messages[:-1] if m["role"] in ("user", "assistant")]
        return ChatRequest(tenant=tenant, assistant=body.model, message=messages[-1]["content"],
                           history=history, channel="openai", temperature=body.temperature,
                           max_tokens=max_tokens, params=_sampling(body))
    live = set(services.llm.tiers())
    if body.model in cfg.model_policy.allowed_tiers:
        if body.model not in live:
            raise _not_live(body.model, services)
        return ChatRequest(tenant=tenant, assistant="", message="", channel="openai", tier=body.model,
                           messages=messages, temperature=body.temperature, max_tokens=max_tokens,
                           params=_sampling(body))
    services.chat.audit_foreign_assistant(principal, tenant, body.model, route="openai:model")
    raise _unknown_model(body.model, tenant, cfg, live)


def _not_live(tier: str, services: Any) -> Unavailable:
    """An allowed tier with no deployment up: 503 naming why (e.g. its API key is not set)."""
    reasons = [f"{label} ({why})" for label, why in services.llm.live.excluded.items()
               if label.split(":", 1)[0] == tier]
    why = "; ".join(reasons) or "no deployment is configured for it"
    return Unavailable(f"tier {tier} has no live deployment: {why}", code="model_not_available",
                       extra={"param": "model"})


def _unknown_model(model: str, tenant: str, cfg: Any, live: set[str]) -> NotFound:
    available = [a.name for a in cfg.assistants] + [t for t in cfg.model_policy.allowed_tiers if t in live]
    return NotFound(f"The model {model!r} does not exist for tenant {tenant!r}; available: "
                    f"{', '.join(available)}", code="model_not_found", extra={"param": "model"})


def _unsupported_by_model(exc: AtriumError) -> AtriumError:
    """A forwarded parameter the answering provider rejects (LiteLLM's UnsupportedParamsError, e.g. `seed` on
    Anthropic) is the caller's 400, not a 502 from the provider."""
    cause = exc.__cause__
    if cause is None or type(cause).__name__ != "UnsupportedParamsError":
        return exc
    text = str(cause)
    # LiteLLM names it either in a list ("does not support parameters: ['seed']") or with its value
    # ("claude-sonnet-5-5 does not support temperature=0.2").
    param = next((name for name in ("temperature", *FORWARDED) if f"'{name}'" in text or f" {name}=" in text), None)
    first = text.split("\n", 1)[0].removeprefix("litellm.UnsupportedParamsError: ").split(". To drop", 1)[0]
    return _bad(f"the model does not support a parameter you sent: {first}; remove it", param,
                "unsupported_parameter")


def _models(tenant: str, services: Any) -> list[dict[str, Any]]:
    cfg = services.registry.get(tenant)
    assert cfg is not None  # the tenant guard only lets known tenants through
    data = [{"id": a.name, "object": "model", "created": 0, "owned_by": tenant, "kind": "assistant",
             "title": a.title, "description": a.description} for a in cfg.assistants]
    live = set(services.llm.tiers())
    data += [{"id": t, "object": "model", "created": 0, "owned_by": tenant, "kind": "tier",
              "models": services.llm.live.live.get(t, [])} for t in cfg.model_policy.allowed_tiers if t in live]
    return data


def _atrium(result: TurnResult, notes: list[str]) -> dict[str, Any]:
    return {"model": result.model, "tier": result.tier, "cached": result.cached, "cost_usd": result.cost_usd,
            "route_reason": result.route_reason, "fallback_from": result.fallback_from,
             "downgraded_from": result.downgraded_from,
            "prompt_version": result.prompt_version, "warnings": [*result.warnings, *notes],
            "turn_id": result.turn_id, "grounding": result.grounding,
            "citations": [{"document_id": c.document_id, "title": c.title, "quote": c.quote, "page": c.page,
                           "score": c.score} for c in result.citations]}


def _usage(result: TurnResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


@router.post("/chat/completions", responses={200: {"model": ChatCompletion}})  # documents the dict built below
async def chat_completions(body: ChatCompletionIn, ctx: ChatAccess, services: ServicesDep):
    return await _complete(body, ctx, services)


# What the fast path must decode exactly as FastAPI does: FastAPI reads a body as JSON only when its content type
# says so (email.message's parse, per request); these plain spellings need no parse. Anything else: FastAPI's path.
_JSON_CONTENT_TYPES = frozenset({"application/json", "application/json; charset=utf-8",
                                 "application/json;charset=utf-8", "application/json; charset=UTF-8"})


async def _fast_chat_completions(request: Request) -> Response | None:
    """The plain chat completion without FastAPI's dependency solving (backend/api/fast_path.py): what the route's
    dependencies do, in their order, for a request whose body is a valid JSON completion request and that has no
    query string. For anything else it declines, nothing done yet: FastAPI then answers it as it always did."""
    if request.scope.get("query_string") or request.app.dependency_overrides:
        return None  # reject_unknown_query has something to read; a test replaced a dependency
    if request.headers.get("content-type") not in _JSON_CONTENT_TYPES:
        return None
    raw = await read_body(request)
    if not raw or json.detect_encoding(raw) != "utf-8":
        raise Declined(raw)
    try:  # as FastAPI: Starlette's json.loads, then the body model's validation of the decoded value
        body = ChatCompletionIn.model_validate(json.loads(raw))
    except Exception:  # invalid JSON or body: FastAPI's handler refuses it, after the access check, in its words
        raise Declined(raw) from None
    ctx = await chat_access(request, request.path_params["tenant"])  # reject_unknown_query: no query string
    return await _complete(body, ctx, await get_services_dep(request), raw)


_fast_chat_completions.replaces = (reject_unknown_query, chat_access, get_services_dep)  # type: ignore[attr-defined]
chat_completions.fast_path = _fast_chat_completions  # type: ignore[attr-defined]


async def _complete(body: ChatCompletionIn, ctx: TenantContext, services: Any, raw: bytes | None = None) -> Response:
    req = _request(body, ctx.tenant, services, ctx.principal, raw)
    # Said, not silently done: a caller's system messages do not reach an assistant model.
    notes = [SYSTEM_IGNORED] if req.messages is None and any(
        m.role in ("system", "developer") for m in body.messages) else []
    cid = f"chatcmpl-{random_hex()[:24]}"
    created = int(time.time())
    if not body.stream:
        try:
            result = await services.chat.run(ctx.principal, req)
        except AtriumError as exc:
            raise _unsupported_by_model(exc) from exc.__cause__
        return CompletionAnswer({
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer},
                         "finish_reason": result.finish_reason}],
            "usage": _usage(result), "atrium": _atrium(result, notes),
        }, [(b"x-atrium-model", result.model.encode("latin-1")),
            (b"x-atrium-cached", str(result.cached).lower().encode("latin-1"))])

    stream = services.chat.stream(ctx.principal, req)
    # Pull the first item before answering: a refusal (quota, tier, prompt) is still a proper HTTP error.
    try:
        first = await anext(stream)
    except AtriumError as exc:
        raise _unsupported_by_model(exc) from exc.__cause__
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

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
                    yield chunk({}, item.finish_reason, atrium=_atrium(item, notes))
                    if include_usage:
                        data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                                "choices": [], "usage": _usage(item)}
                        yield f"data: {json.dumps(data)}\n\n"
                    break
                yield chunk({"content": item})
                item = await anext(stream)
        except AtriumError as exc:  # after the headers went out: OpenAI streams errors as an event
            exc = _unsupported_by_model(exc)
            error = openai_error_body(exc.status_code, exc.code, exc.message, exc.extra.get("param"))
            yield f"data: {json.dumps(error)}\n\n"
        except StopAsyncIteration:
            pass
        finally:
            await stream.aclose()
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


# After the chat completion: routes match in order, and it is the hot path.
@router.get("/models")
def list_models(ctx: ChatAccess, services: ServicesDep) -> dict:
    return {"object": "list", "data": _models(ctx.tenant, services)}


@router.get("/models/{model_id}")
def retrieve_model(model_id: str, ctx: ChatAccess, services: ServicesDep) -> dict:
    for model in _models(ctx.tenant, services):
        if model["id"] == model_id:
            return model
    cfg = services.registry.get(ctx.tenant)
    if cfg is not None and model_id in cfg.model_policy.allowed_tiers:  # allowed, but down: say why, as POST does
        raise _not_live(model_id, services)
    services.chat.audit_foreign_assistant(ctx.principal, ctx.tenant, model_id, route="openai:model")
    raise _unknown_model(model_id, ctx.tenant, services.registry.get(ctx.tenant), set(services.llm.tiers()))
