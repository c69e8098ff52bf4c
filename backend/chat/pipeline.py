"""The one chat pipeline: principal -> prompt -> retrieval -> model -> answer + citations -> record.

The Chainlit UI, the REST chat route, the OpenAI-compatible route and the studio's playground all call
ChatService; none of them talks to SQL, LiteLLM or the vector store directly. A turn passes four stages, each a
module whose class ChatService mixes in: admit (chat/admit.py: access, limits, the tier, the response cache),
retrieve (chat/retrieve.py: the passages, a follow-up's query rewrite, "I don't know"), generate (chat/generate.py:
the model's messages, the quota reservation, the model's answer) and record (chat/record.py: the usage row, the
quota settled or released, the cache). This module holds the service's parts and the entry points that run the
stages in order. Internal tasks (conversation titles, query rewrites) take their own path through the stages they
need, never through `stream`: a query rewrite made inside a turn does not re-enter the pipeline that turn is in.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from backend.auth.guard import AccessGuard
from backend.auth.principal import Principal
from backend.chat.admit import AdmitStage
from backend.chat.answers import Answers
from backend.chat.cache import TurnCache
from backend.chat.embed_cache import CachedEmbed
from backend.chat.generate import RESERVED_OUTPUT, GenerateStage
from backend.chat.record import RecordStage
from backend.chat.retrieve import NO_ANSWER, NO_CONTEXT, RetrieveStage, format_context
from backend.chat.rewrite import QueryRewriter
from backend.chat.turn import UsageRecorder
from backend.chat.types import ChatRequest, Retriever, TurnResult
from backend.db.engine import Database
from backend.governance.audit import AuditLog
from backend.governance.cache import ResponseCache
from backend.governance.inflight import InflightLimits, Slot
from backend.governance.metrics import NoMetrics
from backend.governance.quotas import QuotaService
from backend.governance.usage import UsageWriter
from backend.llm.routing import QueryClassifier
from backend.llm.service import LLMService
from backend.prompts.contract import PromptStorage
from backend.tenants import TenantRegistry

# Imported from here by callers that predate the stage modules (tests, bench/routing).
__all__ = ["NO_ANSWER", "NO_CONTEXT", "RESERVED_OUTPUT", "ChatService", "_format_context"]
_format_context = format_context


class ChatService(AdmitStage, RetrieveStage, GenerateStage, RecordStage):
    def __init__(self, *, db: Database, registry: TenantRegistry, prompts: PromptStorage, llm: LLMService,
                 retriever: Retriever | None = None, quotas: QuotaService | None = None,
                 cache: ResponseCache | None = None, classifier: QueryClassifier | None = None,
                 kb_version: Callable[[str], object] | None = None,
                 usage_writer: UsageWriter | None = None, rewriter: QueryRewriter | None = None,
                 audit: AuditLog | None = None, owner: str | None = None, progress_s: float = 2.0,
                 inflight: InflightLimits | None = None, metrics: NoMetrics | None = None) -> None:
        self.audit = audit
        self.metrics = metrics or NoMetrics()  # governance/metrics.py: turns (UsageRecorder), cache look-ups
        self.inflight = inflight  # the tenant's caps in this process (model calls in flight, open streams)
        self.access = AccessGuard(audit=audit if audit is not None else _NoAudit(),
                                  configured=lambda tenant: registry.get(tenant) is not None)
        self.registry = registry
        self.prompts = prompts
        self.llm = llm
        self.retriever = retriever
        self.quotas = quotas
        self.turn_cache = TurnCache(cache=cache, registry=registry, llm=llm, retriever=retriever, kb_version=kb_version)
        self.classifier = classifier
        # `owner`: this process (governance/leases.py), on the rows of its turns in progress.
        self.usage = UsageRecorder(db=db, writer=usage_writer, owner=owner, progress_s=progress_s,
                                   metrics=self.metrics)
        # Follow-up turns: a standalone retrieval query (ATRIUM_QUERY_REWRITE); first turns never use it.
        self.rewriter = rewriter or QueryRewriter(llm=llm, mode=llm.settings.query_rewrite)
        # Grounded answers and the grounding check use the knowledge base's embedder (no other model is loaded).
        embedder = getattr(getattr(retriever, "retrieval", None), "embedder", None)
        self.answers = Answers(llm=llm, registry=registry, retriever=retriever, quotas=quotas,
                               embed=CachedEmbed(embedder.embed) if embedder is not None else None)

    # -- the pipeline --------------------------------------------------------------------------------------

    async def stream(self, principal: Principal, req: ChatRequest) -> AsyncIterator[str | TurnResult]:
        """Yields answer text as it is generated, then one TurnResult."""
        t = self._admit(principal, req)  # refused here: no usage row, as for a request that never started
        slot: Slot | None = None
        try:
            # Before any thread-pool or model work (retrieval embeds in threads): a tenant over its in-process
            # caps is refused here (a 429, recorded as a quota refusal), not queued behind everyone else.
            slot = self.inflight.acquire(req.tenant, stream=req.stream) if self.inflight else None
            self._route(t)
            # An answer without a model call: a cached one, or "I don't know" for a question without passages.
            if (answer := await self._cached(t) or await self._retrieve(t)) is not None:
                yield answer.answer
                yield await self._record(t, answer)
                return
            # The grounded answer, or the model's (checked when the tier asks): chat/answers.py.
            async with aclosing(self.answers.answer(t, self._generate)) as answer_text:  # closed: the model stops
                async for text in answer_text:
                    yield text
            yield await self._record(t, self._result(t), cache=True)
        except BaseException as exc:
            if (mapped := await self._failed(t, exc)) is not None:
                raise mapped from exc
            raise
        finally:  # every exit: answered, refused, failed, cancelled, or the caller closed the stream
            if slot is not None:
                slot.release()

    async def internal(self, principal: Principal, tenant: str, *, task: str, messages: list[dict],
                       max_tokens: int = 64, assistant: str | None = None) -> TurnResult:
        """Internal tasks (conversation titles, query rewriting for retrieval): the `fast` tier, never the
        smart one, with quotas and a usage record like any other call (under `assistant`, if given). The stages
        they need, without the prompt, the cache or retrieval: not `stream`, whose turn may be the one asking."""
        req = ChatRequest(tenant=tenant, assistant=assistant or "", message="", channel="internal", messages=messages,
                          max_tokens=max_tokens, temperature=0.0, task=task, stream=False)
        t = self._admit(principal, req)
        try:
            self._route(t)
            await self._generate_once(t)  # nobody reads an internal answer as it comes
            return await self._record(t, self._result(t))
        except BaseException as exc:
            if (mapped := await self._failed(t, exc)) is not None:
                raise mapped from exc
            raise

    async def run(self, principal: Principal, req: ChatRequest) -> TurnResult:
        """The turn's result, not streamed. A plain completion (the OpenAI-compatible route's, an internal task's
        kind), whose answer is the model's as it is (`Answers.answer`), takes `_once`; any other turn `stream`."""
        if req.stream:  # a shallow copy: what dataclasses.replace does, without re-running __init__ field by field
            req = copy.copy(req)
            req.stream = False
        if req.messages is not None:
            return await self._once(principal, req)
        result: TurnResult | None = None
        async for item in self.stream(principal, req):
            if isinstance(item, TurnResult):
                result = item
        assert result is not None
        return result

    async def _once(self, principal: Principal, req: ChatRequest) -> TurnResult:
        """`stream` for a non-streaming plain completion, as one coroutine: the same stages in the same order,
        the same refusals, rows, settlement and slot, without the async generators a non-streaming call would
        step through (bench/gateway). Keep the two in step: tests/chat/test_pipeline_once.py runs both."""
        t = self._admit(principal, req)
        slot: Slot | None = None
        try:
            slot = self.inflight.acquire(req.tenant, stream=req.stream) if self.inflight else None
            self._route(t)
            if (answer := await self._cached(t) or await self._retrieve(t)) is not None:
                return await self._record(t, answer)
            await self._generate_once(t)
            return await self._record(t, self._result(t), cache=True)
        except BaseException as exc:
            if (mapped := await self._failed(t, exc)) is not None:
                raise mapped from exc
            raise
        finally:
            if slot is not None:
                slot.release()


class _NoAudit:
    """For a ChatService built without an audit log (tests of the pipeline alone): refusals are only raised."""

    def record(self, kind: str, **fields: Any) -> None:
        return None
