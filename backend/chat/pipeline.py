"""The one chat pipeline: principal -> prompt -> retrieval -> model -> answer + citations -> record.

The Chainlit UI, the REST chat route, the OpenAI-compatible route and the studio's playground all call
ChatService; none of them talks to SQL, LiteLLM or the vector store directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date
from typing import Any

from backend.auth.guard import AccessGuard
from backend.auth.principal import Principal
from backend.auth.request_context import client_ip
from backend.chat.cache import TurnCache
from backend.chat.errors import as_atrium_error
from backend.chat.rewrite import TASK as QUERY_REWRITE
from backend.chat.rewrite import QueryRewriter
from backend.chat.types import MAX_MESSAGE_CHARS, ChatRequest, Retriever, TurnResult
from backend.db.engine import Database
from backend.db.models import ChatTurn
from backend.db.repositories.usage import insert_turns, new_turn
from backend.errors import AtriumError, Forbidden, Invalid, NotFound, QuotaExceeded
from backend.governance.audit import AuditLog
from backend.governance.cache import ResponseCache
from backend.governance.quotas import Admission, QuotaService
from backend.governance.usage import UsageWriter
from backend.knowledge.retrieval import Citation
from backend.llm.knowledge_need import conversational, needs_knowledge
from backend.llm.routing import QueryClassifier, decide
from backend.llm.service import Completion, Delta, LLMService
from backend.prompts.store import PromptNotFound, PromptStore, PromptVersion, render
from backend.tenants import TenantRegistry

log = logging.getLogger("atrium.chat")

NO_CONTEXT = "(no relevant passages were found in the knowledge base)"
_NO_ROOM_TO_ANSWER = ("The model spent all {tokens} tokens of the answer's limit thinking and wrote no answer: raise "
                      "the prompt's max_tokens (studio: Maximum answer length), or lower `reasoning_effort` of the "
                      "{tier} tier's deployments in config/models.yaml.")
NO_ANSWER = ("I don't know — nothing in the {tenant} knowledge base covers this. Try rephrasing, or ask "
             "an administrator to add the document that answers it.")


# What a turn needs besides membership, by the channel it came from (everything else needs `chat`).
_PERMISSION: dict[str, str | None] = {"studio": "prompts:write", "internal": None}


class ChatService:
    def __init__(self, *, db: Database, registry: TenantRegistry, prompts: PromptStore, llm: LLMService,
                 retriever: Retriever | None = None, quotas: QuotaService | None = None,
                 cache: ResponseCache | None = None, classifier: QueryClassifier | None = None,
                 kb_version: Callable[[str], object] | None = None,
                 usage_writer: UsageWriter | None = None, rewriter: QueryRewriter | None = None,
                 audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit
        self.access = AccessGuard(audit=audit if audit is not None else _NoAudit(),
                                  configured=lambda tenant: registry.get(tenant) is not None)
        self.registry = registry
        self.prompts = prompts
        self.llm = llm
        self.retriever = retriever
        self.quotas = quotas
        self.turn_cache = TurnCache(cache=cache, registry=registry, llm=llm, retriever=retriever, kb_version=kb_version)
        self.classifier = classifier
        self.usage_writer = usage_writer
        # Follow-up turns: a standalone retrieval query (ATRIUM_QUERY_REWRITE); first turns never use it.
        self.rewriter = rewriter or QueryRewriter(llm=llm, mode=llm.settings.query_rewrite)

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
        audited for operators, as a probe of another tenant's document id is."""
        if self.audit is None or not any(t.id != tenant and t.assistant(name) for t in self.registry.all()):
            return
        self.audit.record("denied", subject=principal.subject, tenant=tenant, route=route, status=404,
                          ip=client_ip.get(), reason="other_tenants_assistant", detail={"assistant": name[:64]})

    # -- the pipeline --------------------------------------------------------------------------------------

    async def stream(self, principal: Principal, req: ChatRequest) -> AsyncIterator[str | TurnResult]:
        """Yields answer text as it is generated, then one TurnResult."""
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
        started = time.perf_counter()
        tenant_cfg = self.registry.get(req.tenant)
        assert tenant_cfg is not None
        policy = tenant_cfg.model_policy
        # An internal task is recorded under the assistant it ran for (usage by assistant includes it).
        turn = new_turn(tenant=req.tenant, subject=principal.subject, channel=req.channel,
                        assistant=(req.assistant or None) if plain else req.assistant,
                        prompt_name=(req.task if plain else req.assistant),
                        prompt_label=None if plain else req.label)
        admission: Admission | None = None
        messages: list[dict] = []
        streamed: list[str] = []  # the answer so far: counted if the caller goes away mid-answer
        recorded = False  # the turn's row is written: a caller closing the stream after the result changes nothing
        try:
            prompt = None if plain else (req.prompt_override or self._prompt(req))
            turn.prompt_version = (prompt.version or None) if prompt else None
            tier, turn.route_reason = self._route(req, policy, prompt)
            turn.tier = tier
            if req.max_tokens and (cap := self.llm.max_output_tokens(tier)) and req.max_tokens > cap[0]:
                # The provider would refuse it (400), and the Router would then hand the call to another tier.
                raise Invalid(f"max_tokens {req.max_tokens} is more than the {tier} tier can write ({cap[0]} for "
                              f"{cap[1]}); lower max_tokens", code="max_tokens_too_large")
            cache_key = self.turn_cache.key(req=req, tier=tier, prompt=prompt, principal=principal)
            cached = await self.turn_cache.get(cache_key)
            if cached is not None:
                if self.quotas:  # a cached answer still counts as a request, but costs nothing
                    await self.quotas.admit(tenant=req.tenant, subject=principal.subject)
                result = self.turn_cache.hit(cached=cached, req=req, turn=turn)
                yield result.answer
                result.latency_ms = await self._finish(turn, started, req)
                result.turn_id, recorded = turn.id, True
                yield result
                return
            citations: list[Citation] = []
            rewrite_note = ""
            # "hi", "thanks!", "👍": no search (no embedding, no stray citations); answered below without one.
            if self.retriever is not None and not plain and not conversational(req.message):
                citations, rewrite_note = await self._passages(principal, req, policy.allowed_tiers, turn)
            turn.chunk_ids = [c.chunk_id for c in citations]
            # No passage found: asked only then (so free when passages are found), does the message need one?
            need = (needs_knowledge(req.message, follow_up=bool(req.history))
                    if not citations and not plain and self.retriever is not None
                    and getattr(self.retriever, "has_documents", lambda _t: True)(req.tenant) else None)
            if need is not None and need.needed:
                # A question about the company with nothing relevant above the threshold: say so, rather than
                # let the model invent an answer.
                answer = NO_ANSWER.format(tenant=tenant_cfg.name) + _signoff(prompt)
                turn.route_reason = f"no relevant passages in the knowledge base{rewrite_note}"
                yield answer
                result = TurnResult(answer=answer, citations=[], model="", tier=tier,
                                    prompt_name=turn.prompt_name or "", prompt_version=turn.prompt_version,
                                    prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=0,
                                    route_reason=turn.route_reason)
                result.latency_ms = await self._finish(turn, started, req)
                result.turn_id, recorded = turn.id, True
                yield result
                return
            if need is not None:  # a greeting, or a task on the user's own text: the model answers without passages
                turn.route_reason = f"{turn.route_reason}; no passages needed: {need.reason}"
                cache_key = None  # such answers address the user ("Hi Alice"): never serve them to someone else
            messages, max_tokens, temperature, advisory = self._compose(
                principal, req, tenant_name=tenant_cfg.name, prompt=prompt, tier=tier,
                context=lambda: need.context if need is not None else _format_context(citations))
            if self.quotas:
                est_tokens = _estimate_tokens(messages) + (max_tokens or 512)
                admission = await self.quotas.admit(
                    tenant=req.tenant, subject=principal.subject, est_tokens=est_tokens,
                    est_cost_usd=self.llm.estimate_cost(tier, est_tokens - (max_tokens or 512), max_tokens or 512),
                    count_request=req.task is None,  # an internal task rides on its user request's slot
                    sets_max_tokens=req.channel == "openai")  # only API callers choose max_tokens
            final: Completion | None = None
            async for item in self.llm.stream(
                tier=tier, messages=messages, temperature=temperature, max_tokens=max_tokens,
                provider_preference=policy.provider_preference, stream=req.stream, params=req.params,
                allowed_tiers=policy.allowed_tiers, fallbacks=req.task is None,  # internal tasks: own fallback
                advisory=advisory,
            ):
                if isinstance(item, Delta):
                    streamed.append(item.text)
                    if item.model:
                        turn.model = item.model
                    yield item.text
                else:
                    final = item
            assert final is not None
            notes = list(admission.warnings) if admission else []
            if final.finish_reason == "length" and not final.text.strip():
                # A thinking model's thinking counts against max_tokens: it can spend all of it before a word.
                notes.append(_NO_ROOM_TO_ANSWER.format(tokens=max_tokens or "its", tier=final.tier))
            # The prompt's `signoff` is appended verbatim by the pipeline, not left to the model.
            if signoff := _signoff(prompt):
                yield signoff
                final.text = final.text.rstrip() + signoff
            turn.model = final.model
            turn.tier = final.tier  # the tier that answered; differs from the decision after a fallback
            turn.fallback_from = final.fallback_from
            if final.fallback_from:
                turn.route_reason = f"{turn.route_reason}; {final.fallback_from} failed, answered by {final.tier}"
            turn.prompt_tokens = final.prompt_tokens
            turn.completion_tokens = final.completion_tokens
            turn.cost_usd = final.cost_usd
            result = TurnResult(
                answer=final.text, citations=citations, model=final.model, tier=final.tier,
                prompt_name=turn.prompt_name or "", prompt_version=turn.prompt_version,
                prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens,
                cost_usd=final.cost_usd, latency_ms=0, route_reason=turn.route_reason,
                fallback_from=final.fallback_from, warnings=notes,
                finish_reason=final.finish_reason, signoff=signoff,
            )
        except AtriumError as exc:
            if recorded:
                raise
            turn.outcome = "quota" if isinstance(exc, QuotaExceeded) else "refused"
            turn.error = exc.message
            await self._release(admission)
            await self._finish(turn, started, req)
            raise
        except (asyncio.CancelledError, GeneratorExit) as exc:
            if recorded:  # the whole answer and its result were delivered; the caller just closed the stream
                raise
            # The caller went away (closed the stream, disconnected): the model was stopped, and what it read and
            # wrote so far is counted, as a provider bills it (estimated: ~4 characters per token).
            turn.outcome, turn.error = "cancelled", f"the caller went away ({type(exc).__name__})"
            if messages and turn.tier:
                turn.prompt_tokens = _estimate_tokens(messages)
                turn.completion_tokens = len("".join(streamed)) // 4
                turn.cost_usd = self.llm.estimate_cost(turn.tier, turn.prompt_tokens, turn.completion_tokens)
            if admission is not None and self.quotas and turn.prompt_tokens:
                await self.quotas.settle(admission, tokens=turn.prompt_tokens + turn.completion_tokens,
                                         cost_usd=turn.cost_usd)
            else:
                await self._release(admission)
            await self._finish(turn, started, req)
            raise
        except BaseException as exc:
            if recorded:
                raise
            turn.outcome, turn.error = "error", f"{type(exc).__name__}: {exc}"[:500]
            await self._release(admission)
            await self._finish(turn, started, req)
            if (mapped := as_atrium_error(exc)) is not None:
                raise mapped from exc
            raise
        result.latency_ms = await self._finish(turn, started, req)
        result.turn_id = turn.id
        if admission is not None and self.quotas:
            await self.quotas.settle(admission, tokens=result.prompt_tokens + result.completion_tokens,
                                     cost_usd=result.cost_usd)
        await self.turn_cache.put(cache_key, result)
        yield result

    async def internal(self, principal: Principal, tenant: str, *, task: str, messages: list[dict],
                       max_tokens: int = 64, assistant: str | None = None) -> TurnResult:
        """Internal tasks (conversation titles, query rewriting for retrieval): the `fast` tier, never the
        smart one, with quotas and a usage record like any other call (under `assistant`, if given)."""
        req = ChatRequest(tenant=tenant, assistant=assistant or "", message="", channel="internal", messages=messages,
                          max_tokens=max_tokens, temperature=0.0, task=task)
        return await self.run(principal, req)

    async def run(self, principal: Principal, req: ChatRequest) -> TurnResult:
        result: TurnResult | None = None
        async for item in self.stream(principal, replace(req, stream=False)):
            if isinstance(item, TurnResult):
                result = item
        assert result is not None
        return result

    # -- model governance: routing and quotas (the response cache is TurnCache) ----------------------------------------

    async def _passages(self, principal: Principal, req: ChatRequest, allowed_tiers: list[str],
                        turn: ChatTurn) -> tuple[list[Citation], str]:
        """The knowledge base's passages for the message (a follow-up searched as rewritten with its history),
        and the rewrite's note for the turn's route reason (also added to `turn.route_reason`)."""
        assert self.retriever is not None
        query, retry_as_asked, rewrite_note = req.message, False, ""
        if req.history:  # never on a first turn (nor on the single-turn OpenAI-compatible path)
            rq = await self.rewriter.query(
                message=req.message, history=req.history, allowed_tiers=allowed_tiers,
                ask=lambda msgs: self.internal(principal, req.tenant, task=QUERY_REWRITE, messages=msgs,
                                               assistant=req.assistant))
            query, retry_as_asked = rq.text, rq.text != req.message
            rewrite_note = f"; {rq.note}" if rq.note else ""
            turn.route_reason = f"{turn.route_reason}{rewrite_note}"
        citations = await self.retriever.retrieve(principal=principal, tenant=req.tenant, query=query,
                                                  top_k=req.top_k)
        if not citations and retry_as_asked:
            # A poor rewrite, or a topic change that the previous questions dilute, must not hide a question
            # that stands on its own.
            citations = await self.retriever.retrieve(principal=principal, tenant=req.tenant, query=req.message,
                                                      top_k=req.top_k)
            if citations:
                turn.route_reason += "; found with the message as asked"
        return citations, rewrite_note

    def _compose(self, principal: Principal, req: ChatRequest, *, tenant_name: str, prompt: PromptVersion | None,
                 tier: str, context: Callable[[], str]) -> tuple[list[dict], int | None, float | None, dict[str, Any]]:
        """The model call's messages, max_tokens, temperature and advisory parameters (`context`: the passages
        for the prompt's {context}, formatted only when there is a prompt)."""
        # The caller's temperature is theirs (a model that refuses it is their 400); a prompt's or an internal
        # task's is a preference, left out for models that take none (Claude 5.x, GPT-6, Gemini 3.x).
        temperature, advisory = req.temperature, {}
        if req.task and temperature is not None:
            temperature, advisory = None, {"temperature": temperature}
        if prompt is None:
            return list(req.messages or []), req.max_tokens, temperature, advisory
        system = render(prompt.body, {
            # An API key serves people whose names we do not know: not "helping API key 3f2a…".
            "user_name": principal.name if principal.auth != "api_key" else "a colleague",
            "tenant_name": tenant_name,
            "today": date.today().isoformat(),
            "context": context(),
        }, declared=prompt.config.get("variables"))
        # The in-process 135M model copies earlier answers into new ones; give it the last exchange only.
        history = req.history[-2:] if tier == "local" else req.history[-10:]
        messages = [{"role": "system", "content": system}, *history, {"role": "user", "content": req.message}]
        # A caller's temperature wins; its max_tokens can only lower the prompt's cap, never raise it.
        if temperature is None and (preferred := _opt_float(prompt.config.get("temperature"))) is not None:
            advisory["temperature"] = preferred
        max_tokens = _opt_int(prompt.config.get("max_tokens"))
        if req.max_tokens is not None:
            max_tokens = min(req.max_tokens, max_tokens) if max_tokens is not None else req.max_tokens
        return messages, max_tokens, temperature, advisory

    def _route(self, req: ChatRequest, policy: Any, prompt: PromptVersion | None) -> tuple[str, str]:
        if req.task:
            tier = self.llm.internal_tier(policy.allowed_tiers)
            return tier, f"internal task {req.task}: {tier}"
        if req.tier and req.tier not in policy.allowed_tiers:
            raise Forbidden(f"tier {req.tier!r} is not allowed for tenant {req.tenant!r}; allowed: "
                            f"{', '.join(policy.allowed_tiers)}", code="tier_not_allowed")
        if req.messages:
            text, previous = _last_user_text(req.messages) or "", _last_user_text(req.messages, skip=1)
        else:
            text, previous = req.message, _last_user_text(req.history)
        decision = decide(text=text, routing=policy.routing, explicit_tier=req.tier,
                          prompt_tier=str(prompt.config.get("tier") or "") or None if prompt else None,
                          default_tier=policy.default_tier, classifier=self.classifier, previous=previous)
        tier = self.llm.resolve_tier(decision.wanted, policy.allowed_tiers)
        reason = decision.reason if tier == decision.wanted else f"{decision.reason} (not live: using {tier})"
        return tier, reason

    async def _release(self, admission: Admission | None) -> None:
        if admission is not None and self.quotas:
            try:
                await self.quotas.release(admission)
            except Exception:  # pragma: no cover - the counter is re-seeded from SQL at the next period
                log.exception("could not release a quota reservation")

    def _prompt(self, req: ChatRequest) -> PromptVersion:
        # A label nobody set is the caller's 404; an assistant with no prompt file to answer with is the server's
        # misconfiguration, raised by the store as PromptNotAvailable (503, naming the folder and the fix).
        try:
            return self.prompts.resolve(req.tenant, req.assistant, req.label)
        except PromptNotFound as exc:
            raise NotFound(str(exc), code="prompt_not_found") from exc

    def _record(self, turn: ChatTurn) -> None:
        _record_turn(self.db, turn)

    async def _finish(self, turn: ChatTurn, started: float, req: ChatRequest) -> int:
        turn.latency_ms = int((time.perf_counter() - started) * 1000)
        if req.record:  # off the event loop: a commit waits on the disk, and every other request with it
            if self.usage_writer is not None:
                await self.usage_writer.write(turn)
            else:
                await asyncio.to_thread(self._record, turn)
        log.info("chat turn", extra={
            "tenant": turn.tenant, "subject": turn.subject, "assistant": turn.assistant,
            "prompt_version": turn.prompt_version, "model": turn.model, "tier": turn.tier,
            "prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens,
            "cost_usd": turn.cost_usd, "latency_ms": turn.latency_ms, "outcome": turn.outcome,
            "channel": turn.channel,
        })
        return turn.latency_ms


def _record_turn(db: Database, turn: ChatTurn) -> None:
    with db.session() as session:
        insert_turns(session=session, turns=[turn])


def _format_context(citations: list[Citation]) -> str:
    if not citations:
        return NO_CONTEXT
    return "\n\n".join(f"[{i}] {c.title}" + (f" (p. {c.page})" if c.page else "") + f"\n{c.quote}"
                       for i, c in enumerate(citations, 1))


def _estimate_tokens(messages: list[dict]) -> int:
    """~4 characters per token: enough for a reservation that is settled with the real count."""
    return sum(len(str(m.get("content") or "")) // 4 + 4 for m in messages)


def _last_user_text(messages: list[dict], *, skip: int = 0) -> str | None:
    """The text of the last user message (after skipping `skip` of them), or None when there is none."""
    for m in reversed(messages):
        if m.get("role") == "user":
            if skip:
                skip -= 1
                continue
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return None


def _signoff(prompt: PromptVersion | None) -> str:
    """The prompt's `signoff` line (studio setting), as appended to every answer; "" when none."""
    text = str(prompt.config.get("signoff") or "").strip() if prompt else ""
    return "\n\n" + text if text else ""


def _opt_float(v: Any) -> float | None:
    return float(v) if v is not None else None


def _opt_int(v: Any) -> int | None:
    return int(v) if v is not None else None


class _NoAudit:
    """For a ChatService built without an audit log (tests of the pipeline alone): refusals are only raised."""

    def record(self, kind: str, **fields: Any) -> None:
        return None
