"""First-turn response cache policy for the chat pipeline: which turns may be cached, under which key, what is
stored, and the TurnResult a hit becomes.

The store itself (memory or Redis, TTL, key hashing) is backend.governance.cache.ResponseCache; this module only
decides what the chat pipeline may put in it and take out of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from typing import Any

from backend.auth.principal import Principal
from backend.chat.types import ChatRequest, Retriever, TurnResult
from backend.db.models import ChatTurn
from backend.governance.cache import ResponseCache
from backend.knowledge.retrieval import Citation
from backend.llm.service import LLMService
from backend.prompts.schema import PLACEHOLDER_RE
from backend.prompts.store import PromptVersion
from backend.tenants import TenantRegistry

log = logging.getLogger("atrium.chat")


class TurnCache:
    """Caches only first-turn questions of a saved prompt version, asked with the prompt's own settings."""

    def __init__(self, *, cache: ResponseCache | None, registry: TenantRegistry, llm: LLMService,
                 retriever: Retriever | None = None, kb_version: Callable[[str], object] | None = None) -> None:
        self.cache = cache
        self.registry = registry
        self.llm = llm
        self.retriever = retriever
        self.kb_version = kb_version  # tenant -> knowledge-base version (changes on every document change)

    def key(self, *, req: ChatRequest, tier: str, prompt: PromptVersion | None, principal: Principal) -> str | None:
        """The turn's cache key; None = this turn is neither served from nor stored in the cache.

        Never cached: follow-up turns (the answer depends on the history), plain calls, studio drafts,
        unrecorded turns, and a caller's own sampling settings (OpenAI-compatible route), whose answer is not
        the default one.
        """
        if (self.cache is None or not self.cache.enabled or req.history or req.messages is not None
                or req.prompt_override is not None or not req.record
                or req.temperature is not None or req.max_tokens is not None or req.params):
            return None
        kb = self._kb_version(req.tenant)
        if kb is None:
            return None
        policy = self.registry.get(req.tenant).model_policy  # type: ignore[union-attr]
        # The live deployments join the key: an answer from a model that has since gone is not served again.
        model = self.llm.group_for(tier, policy.provider_preference) + "=" + ",".join(
            sorted(self.llm.live.live.get(tier, [])))
        return self.cache.key(tenant=req.tenant, assistant=req.assistant,
                              prompt_version=(prompt.version or None) if prompt else None, kb_version=kb,
                              model=model, question=req.message, personal=_personal(prompt, principal))

    async def get(self, key: str | None) -> dict[str, Any] | None:
        return await self.cache.get(key) if key and self.cache else None

    async def put(self, key: str | None, result: TurnResult) -> None:
        if key and self.cache:
            await self.cache.set(key, _value(result))

    def hit(self, *, cached: dict[str, Any], req: ChatRequest, turn: ChatTurn) -> TurnResult:
        """The TurnResult of a cache hit (free: no tokens, no cost); also marks the turn's usage record."""
        turn.cached = True
        turn.model = cached.get("model")
        turn.tier = cached.get("tier") or turn.tier
        turn.route_reason = f"cache hit ({turn.route_reason})"
        if grounding := cached.get("grounding"):
            turn.answer_mode, turn.grounding = grounding.get("mode"), grounding.get("score")
        citations = [Citation(**c) for c in cached.get("citations", [])]
        turn.chunk_ids = [c.chunk_id for c in citations]
        return TurnResult(answer=cached["answer"], citations=citations, model=turn.model or "",
                          tier=turn.tier or "", prompt_name=req.assistant, prompt_version=turn.prompt_version,
                          prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=0, cached=True,
                          route_reason=turn.route_reason, grounding=cached.get("grounding"))

    def _kb_version(self, tenant: str) -> object | None:
        """The tenant's knowledge-base version; None (= do not cache) when it cannot be known."""
        source = self.kb_version or getattr(self.retriever, "kb_version", None)
        if source is None:
            return "none" if self.retriever is None else None
        try:
            return source(tenant)
        except Exception:
            log.warning("knowledge-base version unavailable; not caching", exc_info=True)
            return None


def _personal(prompt: PromptVersion | None, principal: Principal) -> str:
    """The per-request values the prompt renders (user name, today's date): they join the cache key, so that
    "Hi Alice" is never served to Bob, nor yesterday's date today."""
    used = set(PLACEHOLDER_RE.findall(prompt.body)) if prompt else set()
    return "\x1f".join(([principal.subject] if "user_name" in used else [])
                        + ([date.today().isoformat()] if "today" in used else []))


def _value(result: TurnResult) -> dict[str, Any]:
    return {"answer": result.answer, "citations": [asdict(c) for c in result.citations], "model": result.model,
            "tier": result.tier, "grounding": result.grounding}
