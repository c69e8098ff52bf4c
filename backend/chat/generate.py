"""The pipeline's third stage, generate: the model's messages, the quota reservation (downgraded to a cheaper
tier when a tenant's policy says so), and the model's answer as it streams. A mixin of ChatService
(backend/chat/pipeline.py), whose attributes it reads.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from backend.chat.compose import Composed, compose, estimate_tokens, signoff
from backend.chat.continuation import INSTRUCTION as CONTINUE
from backend.chat.downgrade import cheaper_tier, downgrade_note
from backend.chat.retrieve import format_context
from backend.chat.turn import Turn, UsageRecorder, member_of
from backend.chat.types import TurnResult
from backend.db.repositories.turns import turn_key_of
from backend.errors import QuotaExceeded
from backend.governance.quotas import Admission, QuotaService
from backend.llm.service import Delta, LLMService
from backend.tenants import TenantRegistry
from backend.tracing import TENANT, recording, span

RESERVED_OUTPUT = 512  # what a call without max_tokens reserves for its answer (and, under any budget, may write)
_NO_ROOM_TO_ANSWER = ("The model spent all {tokens} tokens of the answer's limit thinking and wrote no answer: raise "
                      "the prompt's max_tokens (studio: Maximum answer length), or lower `reasoning_effort` of the "
                      "{tier} tier's deployments in config/models.yaml.")


class GenerateStage:
    """The model call of a turn, with its quota admission; `_result` turns its answer into the TurnResult."""

    registry: TenantRegistry
    llm: LLMService
    quotas: QuotaService | None
    usage: UsageRecorder

    async def _generate(self, t: Turn) -> AsyncIterator[str]:
        """Yields the answer's text as the model writes it (then the prompt's sign-off); leaves the model's
        Completion in `t.final`."""
        async for item in self.llm.stream(**await self._call(t)):
            if isinstance(item, Delta):
                self._delta(t, item.text, item.model)
                yield item.text
            else:
                t.final = item
        if self._answered(t):
            yield t.signoff
            t.final.text = t.final.text.rstrip() + t.signoff  # type: ignore[union-attr]

    async def _generate_once(self, t: Turn) -> None:
        """`_generate` for a caller that reads no text as it comes (a non-streaming call, an internal task): the
        same steps and the same turn afterwards, as one coroutine (no async generators to step through)."""
        final = await self.llm.once(**await self._call(t, stream=False))
        if final.text:  # as `stream(stream=False)` yields its one Delta: only when there is text
            self._delta(t, final.text, None)
        t.final = final
        if self._answered(t):
            final.text = final.text.rstrip() + t.signoff

    async def _call(self, t: Turn, *, stream: bool | None = None) -> dict:
        """The model call's messages and arguments, its quota reserved and its row started (`stream=None`: as the
        request asks)."""
        req, policy = t.req, t.policy
        if t.continuation is not None:  # the history ends with the cut answer; the model is asked to go on
            req = replace(req, message=CONTINUE,
                          history=[*req.history[:-1], {"role": "assistant", "content": t.continuation.cut}])

        def composed() -> Composed:  # for the tier: the local model reads less history
            call = compose(t.principal, req, tenant_name=t.tenant_name, prompt=t.prompt, tier=t.tier,
                           context=lambda: t.need.context if t.need is not None else format_context(t.citations))
            t.messages, t.max_tokens = call.messages, call.max_tokens
            return call

        call = composed()
        call = await self._reserve(t, composed) or call  # a spent budget may take the turn to a cheaper tier
        self.usage.start(t)  # recorded as it starts: a process that dies mid-answer leaves an `interrupted` row
        if t.admission is not None:  # what it uses is counted once, by this process or by whoever reaps its row
            t.admission.turn = turn_key_of(t.row)
        kwargs = {"tier": t.tier, "messages": t.messages, "temperature": call.temperature,
                  "max_tokens": t.max_tokens, "provider_preference": policy.provider_preference, "params": req.params,
                  "allowed_tiers": policy.allowed_tiers, "fallbacks": req.task is None,  # internal tasks: own fallback
                  "advisory": call.advisory, "tenant": req.tenant}
        if stream is None:
            kwargs["stream"] = req.stream
        return kwargs

    def _delta(self, t: Turn, text: str, model: str | None) -> None:
        """A piece of the answer: the time to the first one, the answer so far, its tokens written now and then."""
        if t.first_token is None:
            t.first_token = time.perf_counter()
        t.streamed.append(text)
        if model:
            t.row.model = model
        if self.usage.progress_due(t):
            self._so_far(t)
            self.usage.progress(t)

    def _answered(self, t: Turn) -> bool:
        """The model has answered (`t.final`): a note when it wrote nothing; True when the prompt's sign-off is to
        follow (`t.signoff`, appended verbatim by the pipeline, not left to the model)."""
        assert t.final is not None
        if t.final.finish_reason == "length" and not t.final.text.strip():
            # A thinking model's thinking counts against max_tokens: it can spend all of it before a word.
            t.notes.append(_NO_ROOM_TO_ANSWER.format(tokens=t.max_tokens or "its", tier=t.final.tier))
        t.signoff = signoff(t.prompt)
        return bool(t.signoff)

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
        if t.max_tokens is None and t.admission.levels:
            # A budget (the department's tokens or dollars, a member's, an assistant's) holds only if the answer
            # cannot outgrow what was reserved for it: without a cap of its own, the call is capped at the
            # reservation — else each call at the edge may overshoot, and parallel ones admitted together all do.
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
        admission = self.quotas.admit(
            tenant=req.tenant, subject=t.principal.member, est_tokens=est_tokens, est_cost_usd=est_cost,
            count_request=req.task is None,  # an internal task rides on its user request's slot
            sets_max_tokens=req.channel == "openai",  # only API callers choose max_tokens
            **member_of(t), dollars=t.tier != "local")  # the local model: tokens, never dollars
        if not recording():  # tracing off: not even the no-op span's context manager (bench/gateway)
            return await admission
        with span("atrium.quota.admit", {TENANT: req.tenant, "atrium.estimated_tokens": est_tokens}):
            return await admission

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
