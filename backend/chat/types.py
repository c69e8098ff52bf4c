"""What a chat turn is asked with and what it answers: the types every caller of ChatService shares (the UI,
the REST and OpenAI-compatible routes, the studio's playground, the turn cache)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from backend.auth.principal import Principal
from backend.knowledge.retrieval import Citation
from backend.prompts.store import PromptVersion

MAX_MESSAGE_CHARS = 20_000  # per message: the chat UI, REST /chat and the OpenAI-compatible route


class Retriever(Protocol):
    """Tenant-scoped retrieval; the tenant comes from the caller's principal (see knowledge/)."""

    async def retrieve(self, *, principal: Principal, tenant: str, query: str, top_k: int = 5,
                       kb: str | None = None, min_score: float | None = None) -> list[Citation]: ...


@dataclass
class ChatRequest:
    tenant: str
    assistant: str
    message: str
    history: list[dict[str, str]] = field(default_factory=list)
    label: str = "production"
    channel: str = "ui"
    tier: str | None = None  # explicit tier (OpenAI-compatible callers); None = prompt/policy decides
    prompt_override: PromptVersion | None = None  # studio playground: an unsaved draft
    record: bool = True
    top_k: int = 5
    # A plain completion through a tier alias (OpenAI-compatible `model: fast`): these messages as given,
    # no prompt, no retrieval; quotas, routing, cost and recording still apply.
    messages: list[dict] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    params: dict[str, Any] | None = None  # more sampling parameters (stop, top_p, seed...) for the model
    task: str | None = None  # an internal task (title, query_rewrite): always the cheap tier
    stream: bool = True  # False (run()): one non-streaming model call, cheaper when nobody watches tokens
    # The last assistant turn of `history` was cut at the length limit: a "continue" now continues it
    # (chat/continuation.py).
    last_answer_cut: bool = False


@dataclass
class TurnResult:
    answer: str
    citations: list[Citation]
    model: str
    tier: str
    prompt_name: str
    prompt_version: int | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: int
    cached: bool = False
    route_reason: str | None = None
    fallback_from: str | None = None
    downgraded_from: str | None = None  # the tier routed, when a spent budget answered on a cheaper one
    turn_id: int | None = None
    warnings: list[str] = field(default_factory=list)
    finish_reason: str = "stop"  # "length" when max_tokens cut the answer (OpenAI-compatible callers read it)
    signoff: str = ""  # the prompt's sign-off as appended to `answer` ("" when none): it stays the last line
    # How the answer was made (chat/answers.py): mode grounded | generative | checked | fallback, whether it was
    # checked, its grounding score (share of supported sentences), why, and the unsupported sentences.
    grounding: dict[str, Any] | None = None
    # The answer continues the previous one, cut at the length limit ("continue"): it starts where that one stopped.
    continues: bool = False

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost_usd": self.cost_usd,
        }
        return data
