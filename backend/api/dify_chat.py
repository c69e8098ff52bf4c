"""POST /api/t/{tenant}/dify/chat-messages: the tenant's Dify app, behind Atrium's tenant guard.

Forwards to Dify's service API (`POST {DIFY_BASE_URL}/v1/chat-messages`) with the tenant's app key,
read from the environment variable tenants.yaml names (`dify.app_key_env`). Streaming answers pass
through byte for byte; blocking answers come back as Dify's JSON. The `user` Dify sees is always the
authenticated subject, so one user can never read another's Dify conversations.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from backend.api.deps import ChatAccess, ServicesDep
from backend.errors import Unavailable, UpstreamError

router = APIRouter(prefix="/api/t/{tenant}/dify", tags=["dify"])

_TIMEOUT = httpx.Timeout(10.0, read=300.0)  # an agent app may think for minutes between events
# Response headers worth passing on; hop-by-hop and length headers are the proxy's own business.
_PASS_HEADERS = ("content-type", "cache-control", "x-request-id")


class DifyChatIn(BaseModel):
    """Dify's chat-messages body. Unknown fields (files, auto_generate_name, ...) are passed on as-is."""

    model_config = ConfigDict(extra="allow")

    query: str = Field(min_length=1, max_length=20_000)
    inputs: dict[str, Any] = Field(default_factory=dict)
    response_mode: Literal["blocking", "streaming"] = "blocking"
    conversation_id: str | None = None
    user: str | None = Field(None, description="ignored: Atrium sends the authenticated subject")


class DifyChatAnswer(BaseModel):
    """Dify's blocking answer as Dify sent it (Atrium passes it on unchanged, and so any field Dify adds)."""

    model_config = ConfigDict(extra="allow")

    event: str | None = Field(None, description="`message`")
    task_id: str | None = None
    id: str | None = None
    message_id: str | None = None
    conversation_id: str | None = Field(None, description="send it back to continue the conversation")
    mode: str | None = None
    answer: str | None = None
    metadata: dict[str, Any] | None = Field(None, description="usage, retriever resources")
    created_at: int | None = Field(None, description="Unix time")


def _upstream(services, tenant: str) -> tuple[str, str]:
    base = services.settings.dify_base_url
    cfg = services.registry.get(tenant)
    env_name = cfg.dify.app_key_env if cfg is not None else None
    if not base:
        raise Unavailable("the Dify integration is not configured: set DIFY_BASE_URL",
                          code="dify_not_configured")
    if not env_name or not os.environ.get(env_name):
        raise Unavailable(f"tenant {tenant!r} has no Dify app: set the environment variable "
                          f"{env_name or '(dify.app_key_env in tenants.yaml)'} to its app key",
                          code="dify_not_configured")
    return base.rstrip("/") + "/v1/chat-messages", os.environ[env_name]


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() in _PASS_HEADERS}


@router.post("/chat-messages", responses={200: {"model": DifyChatAnswer, "description": "Dify's answer (JSON), or "
                                                "with `response_mode: streaming` its server-sent events, passed "
                                                "through byte for byte"}})
async def dify_chat_messages(body: DifyChatIn, ctx: ChatAccess, services: ServicesDep):
    url, app_key = _upstream(services, ctx.tenant)
    payload = body.model_dump(exclude_none=True)
    payload["user"] = ctx.principal.subject  # never the client's value
    streaming = body.response_mode == "streaming"
    # The tenant's caps in this process (a 429 before Dify is asked); held until the answer has been passed on.
    slot = services.inflight.acquire(ctx.tenant, stream=streaming) if services.inflight else None
    client = httpx.AsyncClient(timeout=_TIMEOUT)
    request = client.build_request("POST", url, json=payload, headers={"Authorization": f"Bearer {app_key}"})
    try:
        upstream = await client.send(request, stream=True)
    except BaseException as exc:
        await client.aclose()
        if slot is not None:
            slot.release()
        if not isinstance(exc, httpx.HTTPError):
            raise
        raise UpstreamError(f"Dify is not reachable at {url}: {type(exc).__name__}",
                            code="dify_unreachable") from exc

    closed = False

    async def close() -> None:  # idempotent: the stream's end and the background task may both call it
        nonlocal closed
        if closed:
            return
        closed = True
        try:
            await upstream.aclose()
            await client.aclose()
        finally:
            if slot is not None:
                slot.release()

    try:
        return await _answer(upstream, close, streaming=streaming)
    except BaseException:
        await close()
        raise


async def _answer(upstream: httpx.Response, close: Callable[[], Awaitable[None]], *, streaming: bool) -> Response:
    if upstream.status_code >= 500:
        text = (await upstream.aread()).decode(errors="replace")[:500]
        await close()
        raise UpstreamError(f"Dify answered {upstream.status_code}: {text}", code="dify_error")
    if streaming and upstream.status_code == 200:
        return StreamingResponse(_passed_on(upstream, close), status_code=200, headers=_headers(upstream),
                                 media_type=upstream.headers.get("content-type", "text/event-stream"),
                                 background=BackgroundTask(close))
    # Blocking answers and Dify's own 4xx refusals (bad input, unknown conversation) go back as Dify said.
    raw = await upstream.aread()
    await close()
    try:
        data = httpx.Response(upstream.status_code, content=raw).json()
    except ValueError as exc:
        raise UpstreamError(f"Dify answered {upstream.status_code} with a non-JSON body", code="dify_error") \
            from exc
    return JSONResponse(data, status_code=upstream.status_code)


async def _passed_on(upstream: httpx.Response, close: Callable[[], Awaitable[None]]) -> AsyncIterator[bytes]:
    """Dify's bytes as they come; the connection and the tenant's slot are given back however the stream ends
    (done, the client gone, cancelled), and by the response's background task if the stream never started."""
    try:
        async for part in upstream.aiter_raw():
            yield part
    finally:
        await close()
