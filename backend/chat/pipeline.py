"""The one chat pipeline: principal -> prompt -> retrieval -> model -> answer + citations -> record.

The Chainlit UI, the REST chat route, the OpenAI-compatible route and the studio's playground all call
ChatService; none of them talks to SQL, LiteLLM or the vector store directly. A turn passes four stages, each a
method below: admit (access, limits, the tier, the response cache), retrieve (the passages, a follow-up's query
rewrite, "I don't know"), generate (the model's messages, the quota reservation, the model's answer) and record
(the usage row, the quota settled or released, the cache). Internal tasks (conversation titles, query rewrites)
take their own path through the stages they need, never through `stream`: a query rewrite made inside a turn
does not re-enter the pipeline that turn is in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from backend.auth.guard import AccessGuard
from backend.auth.principal import Principal
from backend.auth.request_context import client_ip
from backend.chat.answers import Answers
from backend.chat.cache import TurnCache
from backend.chat.compose import Composed, compose, estimate_tokens, last_user_text, signoff
from backend.chat.continuation import INSTRUCTION as CONTINUE
from backend.chat.continuation import continuation_of, without_signoff
from backend.chat.downgrade import cheaper_tier, downgrade_note
from backend.chat.embed_cache import CachedEmbed
from backend.chat.errors import as_atrium_error
from backend.chat.rewrite import TASK as QUERY_REWRITE
from backend.chat.rewrite import QueryRewriter
from backend.chat.turn import Turn, UsageRecorder, member_of
from backend.chat.types import MAX_MESSAGE_CHARS, ChatRequest, Retriever, TurnResult
from backend.db.engine import Database
from backend.db.repositories.usage import new_turn
from backend.errors import AtriumError, Forbidden, Invalid, NotFound, QuotaExceeded
from backend.governance.audit import AuditLog
from backend.governance.cache import ResponseCache
from backend.governance.inflight import InflightLimits, Slot
from backend.governance.metrics import NoMetrics
from backend.governance.quotas import Admission, QuotaService
from backend.governance.usage import UsageWriter
from backend.knowledge.retrieval import Citation
from backend.llm.knowledge_need import KnowledgeNeed, conversational, needs_knowledge
from backend.llm.routing import QueryClassifier, decide
from backend.llm.service import Delta, LLMService
from backend.prompts.contract import PromptNotFound, PromptStorage, PromptVersion
from backend.tenants import ModelPolicy, TenantRegistry
from backend.tracing import TENANT, span

log = logging.getLogger("atrium.chat")
RESERVED_OUTPUT = 512  # what a call without max_tokens reserves for its answer (and, under a member budget, may write)

NO_CONTEXT = "(no relevant passages were found in the knowledge base)"
_NO_ROOM_TO_ANSWER = ("The model spent all {tokens} tokens of the answer's limit thinking and wrote no answer: raise "
                      "the prompt's max_tokens (studio: Maximum answer length), or lower `reasoning_effort` of the "
                      "{tier} tier's deployments in config/models.yaml.")
NO_ANSWER = ("I don't know — nothing in the {tenant} knowledge base covers this. Try rephrasing, or ask "
             "an administrator to add the document that answers it.")


# What a turn needs besides membership, by the channel it came from (everything else needs `chat`).
_PERMISSION: dict[str, str | None] = {"studio": "prompts:write", "internal": None}


class ChatService:
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

    # -- authorisation: re-checked on every turn, whatever the UI showed --------------------------------

    def authorize(self, principal: Principal, tenant: str, assistant: str | None, *,
                  permission: str | None = "chat", route: str = "chat") -> None:
        """`assistant=None`: a plain completion (no assistant involved). `permission`: what the turn needs —
        `chat`, a studio try `prompts:write`, an internal task (a title, a query rewrite) only membership."""
        self.access.check(principal, tenant, permission, route=route, ip=client_ip.get())
        cfg = self.registry.get(tenant)
        assert cfg is not None  # the guard refuses a tenant that is not configured
        if assistant is not None and cfg.assistant(assistant) is None:
            self.audit_foreign_assistant(principal, tenant, assistant, route="chat:assistant")
            raise NotFound(f"tenant {tenant!r} has no assistant {assistant!r}", code="assistant_not_found")

    def audit_foreign_assistant(self, principal: Principal, tenant: str, name: str, *, route: str) -> None:
        """Asking one tenant for another tenant's assistant is a probe (a typo names nothing): a 404 either way,
        audited for operators, as a probe of another tenant's document id is. Every tenant of the file, served by
        this process's deployment groups or not: another group's department is probed all the same."""
        if self.audit is None or not any(t.id != tenant and t.assistant(name) for t in self.registry.every()):
            return
        self.audit.record("denied", subject=principal.subject, tenant=tenant, route=route, status=404,
                          ip=client_ip.get(), reason="other_tenants_assistant", detail={"assistant": name[:64]})

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
            async for _ in self._generate(t):
                pass  # nobody reads an internal answer as it comes
            return await self._record(t, self._result(t))
        except BaseException as exc:
            if (mapped := await self._failed(t, exc)) is not None:
                raise mapped from exc
            raise

    async def run(self, principal: Principal, req: ChatRequest) -> TurnResult:
        result: TurnResult | None = None
        async for item in self.stream(principal, replace(req, stream=False)):
            if isinstance(item, TurnResult):
                result = item
        assert result is not None
        return result

    # -- admit: access, the message's limits, the tier, the response cache ------------------------------------------

    def _admit(self, principal: Principal, req: ChatRequest) -> Turn:
        """Access (audited when refused) and the message's size; the turn's usage row, not yet written."""
        plain = req.messages is not None
        # A label other than production (the staging profile) is for prompt editors, whatever the channel.
        permission = "prompts:write" if not plain and req.label != "production" else _PERMISSION.get(req.channel,
                                                                                                    "chat")
        self.authorize(principal, req.tenant, None if plain else req.assistant, permission=permission,
                       route=f"chat:{req.channel}")
        if len(req.message) > MAX_MESSAGE_CHARS:
            raise Invalid(f"the message is too long ({len(req.message):,} characters; the limit is "
                          f"{MAX_MESSAGE_CHARS:,}): shorten it, or add long text to the knowledge base as a document",
                          code="message_too_long")
        tenant_cfg = self.registry.get(req.tenant)
        assert tenant_cfg is not None
        # An internal task is recorded under the assistant it ran for (usage by assistant includes it).
        row = new_turn(tenant=req.tenant, subject=principal.subject, channel=req.channel,
                       assistant=(req.assistant or None) if plain else req.assistant,
                       prompt_name=(req.task if plain else req.assistant),
                       prompt_label=None if plain else req.label)
        turn = Turn(principal=principal, req=req, row=row, policy=tenant_cfg.model_policy, tenant_name=tenant_cfg.name)
        if not plain:  # "continue" right after an answer cut at the length limit (chat/continuation.py)
            turn.continuation = continuation_of(req.message, req.history, last_answer_cut=req.last_answer_cut)
        return turn

    def _route(self, t: Turn) -> None:
        """The prompt version and the tier (with the reason, for the usage row); a max_tokens the tier cannot
        write is refused here, before the Router would hand the call to another tier."""
        req = t.req
        t.prompt = None if t.plain else (req.prompt_override or self._prompt(req))
        t.row.prompt_version = (t.prompt.version or None) if t.prompt else None
        if t.continuation is not None:  # the cut answer as the model wrote it, without the pipeline's sign-off
            t.continuation = replace(t.continuation, cut=without_signoff(t.continuation.cut, signoff(t.prompt)))
        t.tier, t.row.route_reason = self._tier(req, t.policy, t.prompt,
                                                asked=t.continuation.question if t.continuation else None)
        if t.continuation is not None:
            t.row.route_reason += "; continues the previous answer, cut at the length limit"
        t.row.tier = t.tier
        if req.max_tokens and (cap := self.llm.max_output_tokens(t.tier)) and req.max_tokens > cap[0]:
            # The provider would refuse it (400), and the Router would then hand the call to another tier.
            raise Invalid(f"max_tokens {req.max_tokens} is more than the {t.tier} tier can write ({cap[0]} for "
                          f"{cap[1]}); lower max_tokens", code="max_tokens_too_large")

    async def _cached(self, t: Turn) -> TurnResult | None:
        """A cached answer to this first-turn question (it still counts as a request, but costs nothing)."""
        t.cache_key = self.turn_cache.key(req=t.req, tier=t.tier, prompt=t.prompt, principal=t.principal)
        cached = await self.turn_cache.get(t.cache_key)
        if t.cache_key is not None:
            self.metrics.cache_lookup(tenant=t.req.tenant, hit=cached is not None)
        if cached is None:
            return None
        if self.quotas:
            await self.quotas.admit(tenant=t.req.tenant, subject=t.principal.member, **member_of(t))
        return self.turn_cache.hit(cached=cached, req=t.req, turn=t.row)

    def _tier(self, req: ChatRequest, policy: ModelPolicy, prompt: PromptVersion | None,
              asked: str | None = None) -> tuple[str, str]:
        """`asked`: the question routed in place of the message (a continuation goes on with its question's tier)."""
        if req.task:
            tier = self.llm.internal_tier(policy.allowed_tiers)
            return tier, f"internal task {req.task}: {tier}"
        if req.tier and req.tier not in policy.allowed_tiers:
            raise Forbidden(f"tier {req.tier!r} is not allowed for tenant {req.tenant!r}; allowed: "
                            f"{', '.join(policy.allowed_tiers)}", code="tier_not_allowed")
        if req.messages:
            text, previous = last_user_text(req.messages) or "", last_user_text(req.messages, skip=1)
        else:
            text, previous = asked or req.message, last_user_text(req.history)
        decision = decide(text=text, routing=policy.routing, explicit_tier=req.tier,
                          prompt_tier=str(prompt.config.get("tier") or "") or None if prompt else None,
                          default_tier=policy.default_tier, classifier=self.classifier, previous=previous)
        tier = self.llm.resolve_tier(decision.wanted, policy.allowed_tiers)
        reason = decision.reason if tier == decision.wanted else f"{decision.reason} (not live: using {tier})"
        return tier, reason

    def _prompt(self, req: ChatRequest) -> PromptVersion:
        # A label nobody set is the caller's 404; an assistant with no prompt file to answer with is the server's
        # misconfiguration, raised by the store as PromptNotAvailable (503, naming the folder and the fix).
        try:
            return self.prompts.resolve(req.tenant, req.assistant, req.label)
        except PromptNotFound as exc:
            raise NotFound(str(exc), code="prompt_not_found") from exc

    # -- retrieve: the passages, or "I don't know" ----------------------------------------------------------------

    async def _retrieve(self, t: Turn) -> TurnResult | None:
        """The knowledge base's passages for the message (`t.citations`); the "I don't know" answer when a
        question about the company finds none; None to go on to the model (with `t.need` when none is needed)."""
        req, rewrite_note = t.req, ""
        # "hi", "thanks!", "👍": no search (no embedding, no stray citations); answered below without one.
        if self.retriever is not None and not t.plain and (t.continuation is not None
                                                           or not conversational(req.message)):
            rewrite_note = await self._passages(t)
        t.row.chunk_ids = [c.chunk_id for c in t.citations]
        # What was asked: a continuation's is the cut answer's question (the client writes the history: a "cut
        # answer" to a question no passage covers would otherwise get the model to invent the rest, unchecked).
        asked, follow_up = ((t.continuation.question, bool(t.continuation.earlier)) if t.continuation is not None
                            else (req.message, bool(req.history)))
        if (t.continuation is not None and not t.citations
                and not needs_knowledge(asked, follow_up=follow_up).needed):  # the cut answer needed none
            t.need = KnowledgeNeed(False, "the rest of an answer cut at the length limit")
            return None
        # No passage found: asked only then (so free when passages are found), does the message need one?
        if (t.citations or t.plain or self.retriever is None
                or not getattr(self.retriever, "has_documents", lambda _t: True)(req.tenant)):
            return None
        need = needs_knowledge(asked, follow_up=follow_up)
        if need.needed:
            # A question about the company with nothing relevant above the threshold: say so, rather than
            # let the model invent an answer.
            t.row.route_reason = f"no relevant passages in the knowledge base{rewrite_note}"
            return TurnResult(answer=NO_ANSWER.format(tenant=t.tenant_name) + signoff(t.prompt), citations=[],
                              model="", tier=t.tier, prompt_name=t.row.prompt_name or "",
                              prompt_version=t.row.prompt_version, prompt_tokens=0, completion_tokens=0,
                              cost_usd=0.0, latency_ms=0, route_reason=t.row.route_reason)
        # A greeting, or a task on the user's own text: the model answers without passages.
        t.need = need
        t.row.route_reason = f"{t.row.route_reason}; no passages needed: {need.reason}"
        t.cache_key = None  # such answers address the user ("Hi Alice"): never serve them to someone else
        return None

    async def _passages(self, t: Turn) -> str:
        """The passages for the message (a follow-up searched as rewritten with its history) into `t.citations`;
        returns the rewrite's note for the route reason (also added to the row's route reason)."""
        assert self.retriever is not None
        req, principal = t.req, t.principal
        # A continuation searches for the cut answer's question, as that answer's turn did.
        message, history = ((t.continuation.question, list(t.continuation.earlier)) if t.continuation
                            else (req.message, req.history))
        query, retry_as_asked, rewrite_note = message, False, ""
        if history:  # never on a first turn (nor on the single-turn OpenAI-compatible path)
            rq = await self.rewriter.query(
                message=message, history=history, allowed_tiers=t.policy.allowed_tiers,
                ask=lambda msgs: self.internal(principal, req.tenant, task=QUERY_REWRITE, messages=msgs,
                                               assistant=req.assistant))
            query, retry_as_asked = rq.text, rq.text != message
            rewrite_note = f"; {rq.note}" if rq.note else ""
            t.row.route_reason = f"{t.row.route_reason}{rewrite_note}"
        t.citations = await self.retriever.retrieve(principal=principal, tenant=req.tenant, query=query,
                                                    top_k=req.top_k)
        if not t.citations and retry_as_asked:
            # A poor rewrite, or a topic change that the previous questions dilute, must not hide a question
            # that stands on its own.
            t.citations = await self.retriever.retrieve(principal=principal, tenant=req.tenant, query=message,
                                                        top_k=req.top_k)
            if t.citations:
                t.row.route_reason += "; found with the message as asked"
        return rewrite_note

    # -- generate: the model's messages, the quota reservation, the model's answer -------------------------------

    async def _generate(self, t: Turn) -> AsyncIterator[str]:
        """Yields the answer's text as the model writes it (then the prompt's sign-off); leaves the model's
        Completion in `t.final`."""
        req, policy = t.req, t.policy
        if t.continuation is not None:  # the history ends with the cut answer; the model is asked to go on
            req = replace(req, message=CONTINUE,
                          history=[*req.history[:-1], {"role": "assistant", "content": t.continuation.cut}])

        def composed() -> Composed:  # for the tier: the local model reads less history
            call = compose(t.principal, req, tenant_name=t.tenant_name, prompt=t.prompt, tier=t.tier,
                           context=lambda: t.need.context if t.need is not None else _format_context(t.citations))
            t.messages, t.max_tokens = call.messages, call.max_tokens
            return call

        call = composed()
        call = await self._reserve(t, composed) or call  # a spent budget may take the turn to a cheaper tier
        self.usage.start(t)  # recorded as it starts: a process that dies mid-answer leaves an `interrupted` row
        async for item in self.llm.stream(
            tier=t.tier, messages=t.messages, temperature=call.temperature, max_tokens=t.max_tokens,
            provider_preference=policy.provider_preference, stream=req.stream, params=req.params,
            allowed_tiers=policy.allowed_tiers, fallbacks=req.task is None,  # internal tasks: own fallback
            advisory=call.advisory, tenant=req.tenant,
        ):
            if isinstance(item, Delta):
                if t.first_token is None:
                    t.first_token = time.perf_counter()
                t.streamed.append(item.text)
                if item.model:
                    t.row.model = item.model
                if self.usage.progress_due(t):
                    self._so_far(t)
                    self.usage.progress(t)
                yield item.text
            else:
                t.final = item
        assert t.final is not None
        if t.final.finish_reason == "length" and not t.final.text.strip():
            # A thinking model's thinking counts against max_tokens: it can spend all of it before a word.
            t.notes.append(_NO_ROOM_TO_ANSWER.format(tokens=t.max_tokens or "its", tier=t.final.tier))
        # The prompt's `signoff` is appended verbatim by the pipeline, not left to the model.
        t.signoff = signoff(t.prompt)
        if t.signoff:
            yield t.signoff
            t.final.text = t.final.text.rstrip() + t.signoff

    async def _reserve(self, t: Turn, composed: Callable[[], Composed]) -> Composed | None:
        """The quota admission of the model call, sized from its messages (a 429 before any model call). A tenant
        with `on_budget: downgrade` answers a call its tier's budget no longer fits on the next cheaper allowed tier
        that fits (chat/downgrade.py): then the call composed for that tier is returned."""
        if not self.quotas:
            return None
        first, refusal, call = t.tier, None, None
        while True:
            try:
                t.admission = await self._admit_call(t)
                break
            except QuotaExceeded as exc:
                cheaper = self._cheaper(t, exc)
                if cheaper is None:
                    raise
                refusal = refusal or exc  # the first refusal is the reason (the routed tier's budget)
                t.tier = cheaper
                call = composed()
        t.notes = list(t.admission.warnings)
        t.row.allowance = t.admission.allowance
        if t.max_tokens is None and any(lv.level != "tenant" for lv in t.admission.levels):
            # A member's or an assistant's budget holds only if the answer cannot outgrow what was reserved for
            # it: without a cap of its own, the call is capped at the reservation (else one call overshoots).
            t.max_tokens = RESERVED_OUTPUT
        if refusal is None:
            return None
        t.row.tier, t.row.downgraded_from, t.row.downgrade_reason = t.tier, first, refusal.limit
        t.cache_key = None  # the cheaper tier's answer is not the answer to cache for everyone asking this
        t.row.route_reason = f"{t.row.route_reason}; downgraded from {first} to {t.tier}: {refusal.limit}"
        t.notes.append(downgrade_note(first, t.tier, refusal))
        return call

    async def _admit_call(self, t: Turn) -> Admission:
        assert self.quotas is not None
        req, max_tokens = t.req, t.max_tokens or RESERVED_OUTPUT
        est_tokens = estimate_tokens(t.messages) + max_tokens
        est_cost = self.llm.estimate_cost(t.tier, est_tokens - max_tokens, max_tokens)
        with span("atrium.quota.admit", {TENANT: req.tenant, "atrium.estimated_tokens": est_tokens}):
            return await self.quotas.admit(
                tenant=req.tenant, subject=t.principal.member, est_tokens=est_tokens, est_cost_usd=est_cost,
                count_request=req.task is None,  # an internal task rides on its user request's slot
                sets_max_tokens=req.channel == "openai",  # only API callers choose max_tokens
                **member_of(t), dollars=t.tier != "local")  # the local model: tokens, never dollars

    def _cheaper(self, t: Turn, exc: QuotaExceeded) -> str | None:
        """The tier to try after a budget refusal, or None to refuse (the policy refuses, nothing cheaper fits)."""
        cfg = self.registry.get(t.req.tenant)
        if cfg is None or cfg.quotas.on_budget != "downgrade" or t.req.task is not None:
            return None  # internal tasks (titles, rewrites) are optional: refused, the turn goes on without them
        return cheaper_tier(t.tier, exc, allowed=t.policy.allowed_tiers, live=self.llm.tiers(),
                            max_tokens=t.req.max_tokens, cap=self.llm.max_output_tokens)

    def _result(self, t: Turn) -> TurnResult:
        """The model's answer as the turn's result; the usage row takes the model, tier and tokens that answered."""
        final, row = t.final, t.row
        assert final is not None
        row.model = final.model
        row.tier = final.tier  # the tier that answered; differs from the decision after a fallback
        row.fallback_from = final.fallback_from
        if final.fallback_from:
            row.route_reason = f"{row.route_reason}; {final.fallback_from} failed, answered by {final.tier}"
        row.prompt_tokens = final.prompt_tokens
        row.completion_tokens = final.completion_tokens
        row.cost_usd = final.cost_usd
        return TurnResult(
            answer=final.text, citations=t.citations, model=final.model, tier=final.tier,
            prompt_name=row.prompt_name or "", prompt_version=row.prompt_version,
            prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens,
            cost_usd=final.cost_usd, latency_ms=0, route_reason=row.route_reason,
            fallback_from=final.fallback_from, downgraded_from=row.downgraded_from, warnings=t.notes,
            finish_reason=final.finish_reason, signoff=t.signoff, grounding=t.grounding,
            continues=t.continuation is not None,
        )

    # -- record: the usage row, the quota settled or released, the cache ------------------------------------------

    async def _record(self, t: Turn, result: TurnResult, *, cache: bool = False) -> TurnResult:
        """The turn's row and log line; the reservation settled with what the answer really cost; `cache`: the
        model's answer is stored for the next first-turn question that keys the same."""
        t.recorded = True  # from here on a failure (or a caller going away) is not the turn's: not recorded twice
        t.row.status = "completed"
        result.latency_ms = await self.usage.write(t)
        result.turn_id = t.row.id
        if t.admission is not None and self.quotas:
            await self.quotas.settle(t.admission, tokens=result.prompt_tokens + result.completion_tokens,
                                     cost_usd=result.cost_usd)
        if cache:
            await self.turn_cache.put(t.cache_key, result)
        return result

    async def _failed(self, t: Turn, exc: BaseException) -> AtriumError | None:
        """Record a turn that did not finish — refused (a quota, a limit), failed, or stopped by its caller — and
        return the error to raise in place of `exc` (a model failure the caller can act on), else None."""
        if t.recorded:  # the whole answer and its result were delivered; the caller just closed the stream
            return None
        row = t.row
        if isinstance(exc, AtriumError):
            row.outcome = "quota" if isinstance(exc, QuotaExceeded) else "refused"
            row.error = exc.message
            await self._release(t.admission)
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            await self._stopped(t, exc)
        else:
            row.outcome, row.error = "error", f"{type(exc).__name__}: {exc}"[:500]
            await self._release(t.admission)
        row.status = "interrupted" if row.outcome in ("cancelled", "error") else "completed"
        await self.usage.write(t)
        return as_atrium_error(exc) if row.outcome == "error" else None

    async def _stopped(self, t: Turn, exc: BaseException) -> None:
        """The caller went away (closed the stream, disconnected): the model was stopped, and what it read and
        wrote so far is counted, as a provider bills it (estimated: ~4 characters per token)."""
        row = t.row
        row.outcome, row.error = "cancelled", f"the caller went away ({type(exc).__name__})"
        self._so_far(t)
        if t.admission is not None and self.quotas and row.prompt_tokens:
            await self.quotas.settle(t.admission, tokens=row.prompt_tokens + row.completion_tokens,
                                     cost_usd=row.cost_usd)
        else:
            await self._release(t.admission)

    def _so_far(self, t: Turn) -> None:
        """What the model read and wrote so far, on the row (estimated: ~4 characters per token)."""
        row = t.row
        if t.messages and row.tier:
            row.prompt_tokens = estimate_tokens(t.messages)
            row.completion_tokens = len("".join(t.streamed)) // 4
            row.cost_usd = self.llm.estimate_cost(row.tier, row.prompt_tokens, row.completion_tokens)

    async def _release(self, admission: Admission | None) -> None:
        if admission is not None and self.quotas:
            try:
                await self.quotas.release(admission)
            except Exception:  # pragma: no cover - the counter is re-seeded from SQL at the next period
                log.exception("could not release a quota reservation")


def _format_context(citations: list[Citation]) -> str:
    if not citations:
        return NO_CONTEXT
    return "\n\n".join(f"[{i}] {c.title}" + (f" (p. {c.page})" if c.page else "") + f"\n{c.quote}"
                       for i, c in enumerate(citations, 1))


class _NoAudit:
    """For a ChatService built without an audit log (tests of the pipeline alone): refusals are only raised."""

    def record(self, kind: str, **fields: Any) -> None:
        return None
