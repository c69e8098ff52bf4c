"""The one chat pipeline: principal -> prompt -> retrieval -> model -> answer + citations -> record.

The Chainlit UI, the REST chat route, the OpenAI-compatible route and the studio's playground all call
ChatService; none of them talks to SQL, LiteLLM or the vector store directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Protocol

from backend.auth.principal import Principal
from backend.db.engine import Database
from backend.db.models import ChatTurn
from backend.db.repositories.turns import record_turn
from backend.errors import AtriumError, Forbidden, NotFound, QuotaExceeded
from backend.governance.cache import ResponseCache
from backend.governance.quotas import Admission, QuotaService
from backend.llm.routing import QueryClassifier, decide
from backend.llm.service import Completion, Delta, LLMService
from backend.prompts.store import PromptNotFound, PromptStore, PromptVersion, render
from backend.tenants import TenantRegistry

log = logging.getLogger("atrium.chat")

NO_CONTEXT = "(no relevant passages were found in the knowledge base)"


@dataclass
class Citation:
    chunk_id: str
    document_id: str
    title: str
    quote: str
    score: float
    page: int | None = None
    section: str | None = None


class Retriever(Protocol):
    """Tenant-scoped retrieval; the tenant comes from the caller's principal (see knowledge/)."""

    async def retrieve(self, *, principal: Principal, tenant: str, query: str, top_k: int = 5,
                       kb: str | None = None) -> list[Citation]: ...


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
    turn_id: int | None = None
    warnings: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost_usd": self.cost_usd,
        }
        return data


class ChatService:
    def __init__(self, *, db: Database, registry: TenantRegistry, prompts: PromptStore, llm: LLMService,
                 retriever: Retriever | None = None, quotas: QuotaService | None = None,
                 cache: ResponseCache | None = None, classifier: QueryClassifier | None = None,
                 kb_version: Callable[[str], object] | None = None) -> None:
        self.db = db
        self.registry = registry
        self.prompts = prompts
        self.llm = llm
        self.retriever = retriever
        self.quotas = quotas
        self.cache = cache
        self.classifier = classifier
        self.kb_version = kb_version  # tenant -> knowledge-base version (changes on every document change)

    # -- authorisation: re-checked on every turn, whatever the UI showed --------------------------------

    def authorize(self, principal: Principal, tenant: str, assistant: str) -> None:
        if not principal.is_member(tenant):
            raise Forbidden(f"you are not a member of tenant {tenant!r}", code="tenant_mismatch")
        cfg = self.registry.get(tenant)
        if cfg is None or cfg.assistant(assistant) is None:
            raise NotFound(f"tenant {tenant!r} has no assistant {assistant!r}", code="assistant_not_found")

    # -- the pipeline --------------------------------------------------------------------------------------

    async def stream(self, principal: Principal, req: ChatRequest) -> AsyncIterator[str | TurnResult]:
        """Yields answer text as it is generated, then one TurnResult."""
        self.authorize(principal, req.tenant, req.assistant)
        started = time.perf_counter()
        tenant_cfg = self.registry.get(req.tenant)
        assert tenant_cfg is not None
        turn = ChatTurn(tenant=req.tenant, subject=principal.subject, channel=req.channel,
                        assistant=req.assistant, prompt_name=req.assistant, prompt_label=req.label)
        try:
            prompt = req.prompt_override or self._prompt(req)
            turn.prompt_version = prompt.version or None
            citations: list[Citation] = []
            if self.retriever is not None:
                citations = await self.retriever.retrieve(principal=principal, tenant=req.tenant,
                                                          query=req.message, top_k=req.top_k)
            turn.chunk_ids = [c.chunk_id for c in citations]
            system = render(prompt.body, {
                "user_name": principal.name,
                "tenant_name": tenant_cfg.name,
                "today": date.today().isoformat(),
                "context": _format_context(citations),
            }, declared=prompt.config.get("variables"))
            allowed = tenant_cfg.model_policy.allowed_tiers
            wanted = req.tier or str(prompt.config.get("tier") or tenant_cfg.model_policy.default_tier)
            tier = self.llm.resolve_tier(wanted, allowed)
            turn.tier = tier
            turn.route_reason = "explicit" if req.tier else "prompt tier"
            messages = [{"role": "system", "content": system}, *req.history[-10:],
                        {"role": "user", "content": req.message}]
            final: Completion | None = None
            async for item in self.llm.stream(
                tier=tier, messages=messages,
                temperature=_opt_float(prompt.config.get("temperature")),
                max_tokens=_opt_int(prompt.config.get("max_tokens")),
            ):
                if isinstance(item, Delta):
                    yield item.text
                else:
                    final = item
            assert final is not None
            # The prompt's `signoff` is appended verbatim by the pipeline, not left to the model.
            signoff = str(prompt.config.get("signoff") or "").strip()
            if signoff:
                yield "\n\n" + signoff
                final.text = final.text.rstrip() + "\n\n" + signoff
            turn.model = final.model
            turn.prompt_tokens = final.prompt_tokens
            turn.completion_tokens = final.completion_tokens
            turn.cost_usd = final.cost_usd
            result = TurnResult(
                answer=final.text, citations=citations, model=final.model, tier=tier,
                prompt_name=req.assistant, prompt_version=turn.prompt_version,
                prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens,
                cost_usd=final.cost_usd, latency_ms=0, route_reason=turn.route_reason,
            )
        except AtriumError as exc:
            turn.outcome, turn.error = "refused", exc.message
            self._finish(turn, started, req)
            raise
        except Exception as exc:
            turn.outcome, turn.error = "error", f"{type(exc).__name__}: {exc}"[:500]
            self._finish(turn, started, req)
            raise
        result.latency_ms = self._finish(turn, started, req)
        result.turn_id = turn.id
        yield result

    async def run(self, principal: Principal, req: ChatRequest) -> TurnResult:
        result: TurnResult | None = None
        async for item in self.stream(principal, req):
            if isinstance(item, TurnResult):
                result = item
        assert result is not None
        return result

    def _prompt(self, req: ChatRequest) -> PromptVersion:
        try:
            return self.prompts.resolve(req.tenant, req.assistant, req.label)
        except PromptNotFound as exc:
            raise NotFound(str(exc), code="prompt_not_found") from exc

    def _finish(self, turn: ChatTurn, started: float, req: ChatRequest) -> int:
        turn.latency_ms = int((time.perf_counter() - started) * 1000)
        if req.record:
            with self.db.session() as session:
                record_turn(session=session, turn=turn)
        log.info("chat turn", extra={
            "tenant": turn.tenant, "subject": turn.subject, "assistant": turn.assistant,
            "prompt_version": turn.prompt_version, "model": turn.model, "tier": turn.tier,
            "prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens,
            "cost_usd": turn.cost_usd, "latency_ms": turn.latency_ms, "outcome": turn.outcome,
            "channel": turn.channel,
        })
        return turn.latency_ms


def _format_context(citations: list[Citation]) -> str:
    if not citations:
        return NO_CONTEXT
    return "\n\n".join(f"[{i}] {c.title}" + (f" (p. {c.page})" if c.page else "") + f"\n{c.quote}"
                       for i, c in enumerate(citations, 1))


def _opt_float(v: Any) -> float | None:
    return float(v) if v is not None else None


def _opt_int(v: Any) -> int | None:
    return int(v) if v is not None else None
