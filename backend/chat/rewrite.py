"""Follow-up turns: the search query that retrieval uses when the message only makes sense in context.

"Is there one on Fridays?" retrieved on its own words misses the release-train passage the conversation is
about. On a turn with history the chat pipeline asks this module for a standalone query: rewritten by the
`fast` tier as an internal task (issue 6: internal tasks always use `fast`, with quotas and a usage row),
or else the last two user questions followed by the new message (deterministic, free). The in-process
SmolLM2-135M does not rewrite: on 18 follow-ups over the demo corpus it echoed the previous question,
copied the transcript or answered (13/14 follow-ups, 3/4 topic switches retrieved, by luck), while the
deterministic query retrieved the answer for 14/14 and 4/4 (the message alone: 10/14), so with only
`local` the deterministic query is used. A failed rewrite (provider error, quota) never fails the turn.
A purely social message ("thanks", "ok", "hi", "👍") is not rewritten: it refers to nothing that a query needs;
nor (in `auto`) a follow-up that names its own subject: it is searched as asked, so that an unrelated question
is not answered from the passages of the previous ones.

The rewrite sees only this turn's history and message (what the caller sent for this tenant); the model
call goes through ChatService.internal, the internal tasks' own path (quota admission, the internal tier's model,
a usage row) — not the chat turn's pipeline it is made in — so the tenant's quotas, policy and usage records apply.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from backend.errors import AtriumError
from backend.llm.service import LLMService

log = logging.getLogger("atrium.chat")

Mode = Literal["auto", "model", "off"]
TASK = "query_rewrite"
MAX_TOKENS = 64  # a search query, not an answer
HISTORY_MESSAGES = 4  # the last two exchanges are enough to resolve "it", "that", "what about X"
PREVIOUS_QUESTIONS = 2  # of the deterministic query (measured: 1 misses follow-ups of follow-ups)
CLIP_CHARS = 600  # per history message: long answers add cost, not meaning, to the rewrite
MAX_QUERY_CHARS = 300  # longer output is an answer or an essay, not a query: use the deterministic one

SYSTEM = (
    "You rewrite the last message of a conversation as a standalone search query for a company knowledge "
    "base. Resolve references such as \"it\", \"that\" or \"what about X\" from the conversation. Keep names, "
    "numbers and terms exactly as written. Do not answer the question. Reply with the query only, on one "
    "line, without quotes or explanation. If the message is already standalone, repeat it."
)

# A follow-up that names its own subject ("What is the weather on Mars and who won the 1998 world cup?", "How
# long can sales-led trials last?") is retrieved as asked: prefixed with the previous questions it would find
# *their* passages and be answered, with wrong sources, instead of "I don't know". Any word that may point back
# into the conversation, or a leading link ("and for Zurich?"), keeps the combined query (the safe side).
_REFERS_BACK = re.compile(
    r"\b(?:it|its|it's|that|this|these|those|they|them|their|theirs|there|one|ones|same|also|too|else|instead|"
    r"other|others|another|more|then|above|previous|earlier|former|latter|he|she|him|her|his|such|both|either|"
    r"neither|again|anyway|mentioned|said)\b")
_LEADING_LINK = re.compile(r"^(?:and|but|or|so|plus|what about|how about|what if|if so|ok|okay|then|now)\b")
# A statement ("G&A is 8% over but $60k", "the deal is 25k ACV tho") adds to the conversation's question, so
# only a question of its own stands alone.
_QUESTION = re.compile(r"^(?:what|what's|whats|when|where|which|who|whom|whose|why|how|is|are|was|were|can|could|"
                       r"do|does|did|should|would|will|may|must|has|have|tell me|give me|list|explain)\b")
STANDALONE_MIN_WORDS = 6

# Labels and wrappers models put around the query despite being told not to.
_LABEL = re.compile(r"^(?:standalone |rewritten |search )*(?:search )?(?:query|question)\s*[:\-–]\s*", re.I)
_WRAP = " \t\"'`*“”‘’«»"


class _Answer(Protocol):
    answer: str
    tier: str


Ask = Callable[[list[dict[str, str]]], Awaitable[_Answer]]


@dataclass(frozen=True)
class RetrievalQuery:
    text: str
    note: str | None = None  # how the query was made, for the turn's route_reason; None = the message as asked


class QueryRewriter:
    """`auto`: the model when the internal tier is `fast` on a provider model, else deterministic;
    `model`: always the internal tier's model (even `local` or `smart`); `off`: the message as asked."""

    def __init__(self, *, llm: LLMService, mode: Mode = "auto") -> None:
        self.llm = llm
        self.mode = mode

    async def query(self, *, message: str, history: list[dict[str, str]], allowed_tiers: list[str],
                    ask: Ask) -> RetrievalQuery:
        """`ask(messages)`: the internal model call (ChatService.internal for this principal and tenant)."""
        turns = _conversation(history)
        if self.mode == "off" or not turns:
            return RetrievalQuery(message)
        if self.mode == "auto" and stands_alone(message):
            return RetrievalQuery(message, "retrieval query: the message as asked (it names its own subject)")
        fallback = deterministic_query(message, turns)
        tier = self._model_tier(allowed_tiers)
        if tier is None:
            return RetrievalQuery(fallback, "retrieval query: previous questions + this message")
        try:
            result = await ask(rewrite_messages(message, turns))
        except Exception as exc:  # a provider error or a quota refusal must not fail the turn
            reason = exc.code if isinstance(exc, AtriumError) else type(exc).__name__
            log.warning("query rewrite failed; using the previous questions + this message",
                        extra={"reason": reason})
            return RetrievalQuery(fallback, f"query rewrite failed ({reason}): previous questions + this message")
        text = clean(result.answer)
        if not text:
            return RetrievalQuery(fallback, f"query rewrite by {result.tier} unusable: previous questions + "
                                            "this message")
        return RetrievalQuery(text, f"retrieval query rewritten by {result.tier}")

    def _model_tier(self, allowed_tiers: list[str]) -> str | None:
        """The tier that would rewrite, or None for the deterministic query."""
        return self.llm.internal_model_tier(allowed_tiers, self.mode)


def _conversation(history: list[dict[str, str]]) -> list[dict[str, str]]:
    """The user/assistant messages of the history (a caller's system messages are not conversation)."""
    return [{"role": m["role"], "content": str(m.get("content") or "")} for m in history
            if m.get("role") in ("user", "assistant") and str(m.get("content") or "").strip()]


def stands_alone(message: str) -> bool:
    """Whether a follow-up makes sense without the conversation (conservatively: when in doubt, it does not)."""
    words = re.findall(r"[a-z0-9][a-z0-9'\-]*", message.lower().replace("’", "'"))
    text = " ".join(words)
    return (len(words) >= STANDALONE_MIN_WORDS and bool(_QUESTION.match(text) or message.rstrip().endswith("?"))
            and not _LEADING_LINK.match(text) and not _REFERS_BACK.search(text))


def deterministic_query(message: str, turns: list[dict[str, str]]) -> str:
    """The previous user questions followed by the new message: keeps the topic of "what about Zurich?".
    Two, not one: after "Who approves a 15% discount?" / "And above 20%?", "And on add-ons?" needs the first."""
    previous = [" ".join(m["content"].split())[:CLIP_CHARS] for m in turns if m["role"] == "user"]
    return " ".join([*previous[-PREVIOUS_QUESTIONS:], message])


def rewrite_messages(message: str, turns: list[dict[str, str]]) -> list[dict[str, str]]:
    lines = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {_clip(m['content'])}"
             for m in turns[-HISTORY_MESSAGES:]]
    user = "Conversation:\n" + "\n".join(lines) + f"\n\nLast message: {_clip(message)}\n\nStandalone search query:"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def clean(text: str) -> str:
    """The query from a model's reply: first meaningful line, without labels, quotes or markdown."""
    for line in (text or "").splitlines():
        line = _LABEL.sub("", line.strip(_WRAP)).strip(_WRAP)
        if line and not line.endswith(":"):  # "Here is the rewritten query:" introduces the next line
            return line if len(line) <= MAX_QUERY_CHARS else ""
    return ""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CLIP_CHARS else text[:CLIP_CHARS] + "…"
