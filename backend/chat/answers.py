"""How a turn's answer is made once its passages are known: the grounded answer, or the model's answer — checked
sentence by sentence against the passages when the tier (or the prompt) asks for it.

The pipeline (backend/chat/pipeline.py) hands every turn's answer through `Answers.answer`, with its own model
stage as `model`. The policy (backend/llm/answer_policy.py) says which way a turn goes:
- no passages (a greeting, a task on the user's own text), a plain completion or an internal task: the model's
  answer as it is — on the in-process demo model with a short prompt a 135M model can follow;
- `grounded`: the passages' own statements with their markers (grounded.py); no model call, no tokens; the
  request still counts against the tenant's rate limits;
- `generative` with the check: the model's sentences are shown as each one is complete and checked
  (grounding_check.py); an unsupported sentence is struck through and said to be unsupported, and when most of
  them are, what the sources say follows (the grounded answer, with the same passage numbers);
- every generated answer with passages, checked or not: a supported sentence without an [n] marker gets the one
  of the passage that supports it, and a marker naming no cited passage is removed (markers.py), so the text's
  markers match the sources line;
- "continue" after an answer cut at the length limit: the model goes on from where it stopped (continuation.py),
  its answer checked and marked as above.
The turn keeps what happened in `t.grounding` (API `atrium.grounding`, the studio) and on its usage row
(`answer_mode`, `grounding`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import replace

from backend.chat.compose import signoff
from backend.chat.continuation import join, trimmed
from backend.chat.grounded import Embed, grounded_answer
from backend.chat.grounding_check import Check, GroundingChecker, SentenceCheck
from backend.chat.markers import Fences, fix_markers
from backend.chat.question_signals import sub_questions
from backend.chat.turn import Turn, member_of
from backend.chat.types import Retriever
from backend.governance.quotas import QuotaService
from backend.llm.answer_policy import AnswerPolicy, policy_for
from backend.llm.service import Completion, LLMService
from backend.prompts.contract import PromptVersion
from backend.tenants import TenantRegistry

GROUNDED_MODEL = "atrium/grounded"  # the usage row's model of a grounded answer (no model call)
PART_TOP_K, PART_MIN_SCORE = 5, 0.3  # the passages of one part of a joined question (the whole found some)
FALLBACK_BELOW = 0.5  # a checked answer with less than this share of supported sentences gets the sources' answer
UNSUPPORTED = "~~{sentence}~~ _(not supported by the cited sources)_"
FALLBACK_NOTE = "\n\n_Most of this answer is not supported by the cited sources. What they say:_\n\n"
# The in-process 135M model follows a short prompt; the shipped prompts (written for any model) confuse it on a
# greeting ("What brings you to our blog?").
CONTINUED = "continues the previous answer, cut at the length limit"
SMALL_TALK = ("You are {title}, the assistant of the {tenant} team at Northwind Analytics, talking with {user}. "
              "Reply in one or two short, friendly sentences. Offer to answer questions about {topic}. "
              "Do not state any facts, numbers or policies.")
_ENDED = re.compile(r"[.!?][\"')\]]*\s*$")  # a sentence that ends (not one the length limit cut)
_BOUNDARY = re.compile(r"[.!?][\"')\]]?(?:\s*\[\d+\])*\s+|\n")


class Answers:
    def __init__(self, *, llm: LLMService, registry: TenantRegistry, retriever: Retriever | None,
                 embed: Embed | None, quotas: QuotaService | None) -> None:
        self.llm = llm
        self.registry = registry
        self.retriever = retriever
        self.embed = embed
        self.quotas = quotas

    def policy(self, t: Turn) -> AnswerPolicy:
        return policy_for(t.tier, answers=getattr(self.llm.config, "answers", {}) or {},
                          models=self.llm.tier_models().get(t.tier, {}).get("models", []),
                          prompt_config=t.prompt.config if t.prompt else None)

    def answer(self, t: Turn, model: Callable[[Turn], AsyncIterator[str]]) -> AsyncIterator[str]:
        """The turn's answer text as it is made; `t.final` holds the whole answer after the last piece."""
        if t.plain or t.req.task:  # ChatService._once relies on it: a plain completion's answer is the model's
            return model(t)
        policy = self.policy(t)
        if t.continuation is not None:
            return self._continued(t, policy, model)
        if not t.citations:
            reason = f"no passages: the message needs none ({t.need.reason})" if t.need else "no passages"
            t.grounding = {"mode": "generative", "checked": False, "score": None, "reason": reason}
            t.row.answer_mode = "generative"
            if policy.mode == "grounded" and t.prompt is not None and t.need is not None:
                t.prompt = self._small_talk(t)
            return model(t)
        if policy.mode == "grounded":
            return self._grounded(t, policy, model)
        # Checked when the policy says so; marked with the passages' [n] either way.
        return self._checked(t, policy, model(t), check=policy.grounding_check)

    def _continued(self, t: Turn, policy: AnswerPolicy,
                   model: Callable[[Turn], AsyncIterator[str]]) -> AsyncIterator[str]:
        """The rest of a cut answer: always the model's (a grounded answer is never cut), without what it repeats
        of the cut text; checked and marked like any generated answer."""
        assert t.continuation is not None
        policy = replace(policy, reason=f"{CONTINUED}; {policy.reason}")
        if not t.citations and policy.mode == "grounded" and t.prompt is not None and t.need is not None:
            t.prompt = self._small_talk(t)  # the cut answer was the in-process model's short reply
        rest = trimmed(t.continuation.cut, model(t), passthrough=signoff(t.prompt))
        if t.citations:
            return self._checked(t, policy, rest, check=policy.grounding_check)
        t.grounding = {"mode": "generative", "checked": False, "score": None, "reason": policy.reason}
        t.row.answer_mode = "generative"
        return self._kept(t, rest)

    @staticmethod
    async def _kept(t: Turn, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        """`pieces`, and the turn's answer made of exactly them."""
        shown: list[str] = []
        async for text in _closing(pieces):
            shown.append(text)
            yield text
        assert t.final is not None
        t.final.text = "".join(shown)

    # -- grounded ----------------------------------------------------------------------------------------------

    async def _grounded(self, t: Turn, policy: AnswerPolicy,
                        model: Callable[[Turn], AsyncIterator[str]]) -> AsyncIterator[str]:
        if self.quotas:  # no tokens, but a request: the tenant's and the user's rate limits apply
            await self.quotas.admit(tenant=t.req.tenant, subject=t.principal.member, **member_of(t))
        citations = await self._each_question(t)
        grounded = await asyncio.to_thread(grounded_answer, t.req.message, citations, self.embed)
        if grounded is None:  # the passages hold only code or headings: the model reads them
            async with aclosing(model(t)) as answer:
                async for text in answer:
                    yield text
            return
        t.citations = grounded.citations
        t.row.chunk_ids = [c.chunk_id for c in t.citations]
        t.signoff = signoff(t.prompt)
        for piece in grounded.pieces:
            yield piece
        if t.signoff:
            yield t.signoff
        t.final = Completion(text=grounded.text + t.signoff, model=GROUNDED_MODEL, tier=t.tier, prompt_tokens=0,
                             completion_tokens=0, cost_usd=0.0)
        t.grounding = {"mode": "grounded", "checked": False, "score": 1.0, "reason": policy.reason,
                       "statements": grounded.units}
        t.row.answer_mode, t.row.grounding = "grounded", 1.0

    async def _each_question(self, t: Turn) -> list:
        """The turn's passages, and those of each question a message joins ("What counts as a SEV1 and who gets
        paged?"): searched one by one, for the same principal and tenant, the first search's passages first."""
        asks = sub_questions(t.req.message)
        if len(asks) < 2 or self.retriever is None:
            return t.citations
        found = list(t.citations)
        seen = {c.chunk_id for c in found}
        for ask in asks:
            for c in await self.retriever.retrieve(principal=t.principal, tenant=t.req.tenant, query=ask,
                                                   top_k=PART_TOP_K, min_score=PART_MIN_SCORE):
                if c.chunk_id not in seen:
                    seen.add(c.chunk_id)
                    found.append(c)
        return found

    # -- the model's answer, checked -------------------------------------------------------------------------------

    async def _checked(self, t: Turn, policy: AnswerPolicy, inner: AsyncIterator[str], *,
                       check: bool = True) -> AsyncIterator[str]:
        """The model's sentences, each shown once complete, checked (`check`: else only matched to the passages
        for their markers) and marked; the sign-off passes unchecked."""
        question = t.continuation.question if t.continuation is not None else t.req.message
        citations = list(t.citations)
        checker = asyncio.ensure_future(asyncio.to_thread(GroundingChecker, citations, self.embed,
                                                          question=question))
        shown: list[str] = []
        checks: list[SentenceCheck] = []
        fences = Fences()
        pending = ""
        # A continuation's first sentence ends the one the cut answer left unfinished: checked as that whole one.
        lead = [_unfinished(t.continuation.cut) if t.continuation is not None else ""]

        async def judge(text: str, *, last: bool = False) -> list[str]:
            # The words the length limit cut off mid-sentence get no marker: a "continue" goes on from them.
            cut = (last and t.final is not None and t.final.finish_reason == "length"
                   and not _ENDED.search(text))
            out = await self._judge(text, await checker, checks, fences=fences, strike=check, mark=not cut,
                                    lead=lead[0])
            if text.strip():
                lead[0] = ""
            return out

        try:
            async for text in _closing(inner):
                if t.signoff and t.final is not None and text == t.signoff:
                    for out in await judge(pending, last=True):
                        shown.append(out)
                        yield out
                    pending = ""
                    shown.append(text)
                    yield text
                    continue
                pending += text
                cut = _last_boundary(pending)
                if cut:
                    done, pending = pending[:cut], pending[cut:]
                    for out in await judge(done):
                        shown.append(out)
                        yield out
            if pending:
                for out in await judge(pending, last=True):
                    shown.append(out)
                    yield out
        finally:
            if not checker.done():
                checker.cancel()
        assert t.final is not None
        if not check:
            t.final.text = "".join(shown)
            t.grounding = {"mode": "generative", "checked": False, "score": None, "reason": policy.reason}
            t.row.answer_mode = "generative"
            return
        result = Check(checks)
        fallback = None
        if result.score < FALLBACK_BELOW:
            fallback = await asyncio.to_thread(grounded_answer, question, citations, self.embed, renumber=False)
        if fallback is not None:
            note = FALLBACK_NOTE + fallback.text
            shown.append(note)
            yield note
        t.final.text = "".join(shown)
        mode = "fallback" if fallback is not None else "checked"
        t.grounding = {"mode": mode, "checked": True, "score": result.score, "reason": policy.reason,
                       "unsupported": [{"sentence": s.text, "reason": s.reason} for s in result.unsupported]}
        t.row.answer_mode, t.row.grounding = mode, result.score

    def _small_talk(self, t: Turn) -> PromptVersion:
        """The turn's prompt with a short system prompt the in-process model can follow (its settings kept)."""
        assert t.prompt is not None
        cfg = (tenant := self.registry.get(t.req.tenant)) and tenant.assistant(t.req.assistant)
        title = getattr(cfg, "title", None) or t.req.assistant.replace("-", " ")
        topic = str(getattr(cfg, "description", "") or "its knowledge base").rstrip(".")
        body = SMALL_TALK.format(title=title, tenant=t.tenant_name, user="{{user_name}}", topic=topic.lower())
        config = {**t.prompt.config, "max_tokens": min(int(t.prompt.config.get("max_tokens") or 64), 64)}
        config.pop("variables", None)
        return replace(t.prompt, body=body, config=config)

    async def _judge(self, text: str, checker: GroundingChecker, checks: list[SentenceCheck], *, fences: Fences,
                     strike: bool = True, mark: bool = True, lead: str = "") -> list[str]:
        """`text` (complete sentences, with the spaces between them) as shown: each supported sentence with its
        passage's marker, markers naming no passage removed, unsupported sentences struck through (`strike`).
        Code is shown as written. `lead`: the start of the first sentence, shown before (checked with it)."""
        out = []
        for sentence, gap in _sentences(text):
            if fences.code(sentence) or not sentence:
                out.append(sentence + gap)
                continue
            whole, lead = (join(lead, sentence) if lead else sentence), ""
            result = await asyncio.to_thread(checker.check, whole)
            checks.append(result)
            shown = fix_markers(sentence, sources=len(checker.citations),
                                passage=result.passage if result.supported and mark else None)
            if strike and result.counted and not result.supported:
                shown = UNSUPPORTED.format(sentence=shown)
            out.append(shown + gap)
        return out


def _unfinished(text: str) -> str:
    """The sentence `text` ends with when the length limit cut it ("" when its last sentence ended)."""
    text = text.rstrip()
    return "" if _ENDED.search(text) else text[_last_boundary(text):]


def _last_boundary(text: str) -> int:
    """Where the last complete sentence of `text` ends (0: none is complete yet)."""
    end = 0
    for m in _BOUNDARY.finditer(text):
        end = m.end()
    return end


def _sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, the whitespace after it) pairs; a sentence keeps its [n] markers."""
    out: list[tuple[str, str]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        body = text[start:m.end()]
        stripped = body.rstrip()
        out.append((stripped, body[len(stripped):]))
        start = m.end()
    if text[start:].strip():
        body = text[start:]
        out.append((body.rstrip(), body[len(body.rstrip()):]))
    elif text[start:]:
        out.append(("", text[start:]))
    return [(s, g) for s, g in out if s or g]


async def _closing(inner: AsyncIterator[str]) -> AsyncIterator[str]:
    """`inner`, closed when this is (the model call stops with the caller's stream)."""
    async with aclosing(inner) as it:
        async for text in it:
            yield text
