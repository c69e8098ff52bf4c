"""The pipeline's second stage, retrieve: the knowledge base's passages for the message (a follow-up searched as
rewritten with its history), or the "I don't know" answer when a question about the company finds none. A mixin of
ChatService (backend/chat/pipeline.py), whose attributes (and `internal`, for a query rewrite) it reads.
"""

from __future__ import annotations

from backend.chat.compose import signoff
from backend.chat.rewrite import TASK as QUERY_REWRITE
from backend.chat.rewrite import QueryRewriter
from backend.chat.turn import Turn
from backend.chat.types import Retriever, TurnResult
from backend.knowledge.retrieval import Citation
from backend.llm.knowledge_need import KnowledgeNeed, conversational, needs_knowledge

NO_CONTEXT = "(no relevant passages were found in the knowledge base)"
NO_ANSWER = ("I don't know — nothing in the {tenant} knowledge base covers this. Try rephrasing, or ask "
             "an administrator to add the document that answers it.")


class RetrieveStage:
    """The passages into `Turn.citations`; "I don't know" when none is found and one is needed."""

    retriever: Retriever | None
    rewriter: QueryRewriter

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


def format_context(citations: list[Citation]) -> str:
    if not citations:
        return NO_CONTEXT
    return "\n\n".join(f"[{i}] {c.title}" + (f" (p. {c.page})" if c.page else "") + f"\n{c.quote}"
                       for i, c in enumerate(citations, 1))

