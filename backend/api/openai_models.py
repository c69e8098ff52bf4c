"""What POST /api/t/{tenant}/v1/chat/completions answers, as the OpenAPI document states it: OpenAI's
`chat.completion` object, plus Atrium's own `atrium` field (ignored by OpenAI's SDKs, kept in `model_extra`).

The route builds the answer as a dict; these models describe it (FastAPI's `responses`) without converting each
answer again. tests/api/test_response_schemas.py holds real answers to them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.responses import Response

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


class CompletionAnswer(Response):
    """The answer sent: JSONResponse's exact bytes and headers (its `render` and `init_headers`), without building
    a JSON encoder and a header mapping per answer (bench/gateway/cprofile_request.py)."""

    media_type = "application/json"

    def __init__(self, content: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = _ENCODER.encode(content).encode("utf-8")
        self.raw_headers = [*headers, (b"content-length", str(len(self.body)).encode()),
                            (b"content-type", b"application/json")]


class CompletionMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class CompletionChoice(BaseModel):
    index: int
    message: CompletionMessage
    finish_reason: str = Field(description="`stop`, or `length` when max_tokens cut the answer")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


GROUNDING = ("how the answer was made: `mode` (grounded: the passages' own statements, no model call; generative: "
             "the model's, unchecked; checked: the model's, each sentence checked against the cited passages; "
             "fallback: mostly unsupported, followed by the sources' answer), `checked`, `score` (the share of "
             "supported sentences), `reason` (why this mode), `unsupported` (the sentences found unsupported, and "
             "why); null for a plain completion, or an answer neither a model nor a passage made")


class AtriumCitation(BaseModel):
    document_id: str
    title: str
    quote: str
    page: int | None
    score: float


class AtriumDetails(BaseModel):
    """How Atrium answered: the model and tier, cost, cache, the prompt version, the passages cited."""

    model: str = Field(description="the model that answered (empty when none was called)")
    tier: str
    cached: bool
    cost_usd: float
    route_reason: str | None
    fallback_from: str | None
    downgraded_from: str | None = Field(default=None, description="the tier routed, when a spent budget had a "
                                                                  "cheaper one answer (on_budget: downgrade)")
    prompt_version: int | None
    warnings: list[str] = Field(description="e.g. that system messages are not used for an assistant model")
    turn_id: int | None
    grounding: dict[str, Any] | None = Field(default=None, description=GROUNDING)
    citations: list[AtriumCitation]


class ChatCompletion(BaseModel):
    """With `stream: true`, the same as `chat.completion.chunk` server-sent events, ending with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion"]
    created: int = Field(description="Unix time")
    model: str = Field(description="the `model` of the request (an assistant or a tier)")
    choices: list[CompletionChoice]
    usage: CompletionUsage
    atrium: AtriumDetails
