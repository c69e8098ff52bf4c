""""continue" after an answer cut at the length limit: the rest of that answer, not the same answer again.

A short message that only asks to go on ("continue", "go on", "keep going") right after an answer the model
stopped at max_tokens (`ChatRequest.last_answer_cut`: the chat remembers it, REST callers send the history's last
assistant item with `finish_reason: "length"`) is a continuation. The model is asked with the same passages (the
cut answer's question is searched again), the history ending with the cut answer as the last assistant turn, and
an instruction to go on from where it stopped. Models often start by repeating the last words they wrote (or the
whole answer): that overlap with the cut text is removed as the continuation streams, so what is shown starts
where the cut answer stopped, with the space (or line break) that separates it from the cut text: appended to
that text (`join`), the two are one answer again (the next turn's history).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

INSTRUCTION = ("Your previous answer was cut off at the length limit. Continue it exactly where it stopped, "
               "starting with the next word: do not repeat anything you already wrote, do not start over, and do "
               "not comment on the interruption.")
_ASKS = re.compile(r"(?:please\s+|ok(?:ay)?[,\s]+|and\s+)?(?:continue|go on|keep going|carry on)"
                   r"(?:\s+(?:the|your)\s+answer)?(?:[,\s]+please)?[\s.!…]*", re.I)
_NEW_BLOCK = re.compile(r"(?:[-*+]|\d+[.)]|#+)\s")


def asks_to_continue(message: str) -> bool:
    """Only the whole message: "continue" is; "continue with the refund policy" asks something new."""
    return len(message) <= 40 and bool(_ASKS.fullmatch(message.strip()))


@dataclass(frozen=True)
class Continuation:
    question: str  # the question the cut answer answers: searched again, and what the answer is checked against
    cut: str  # the cut answer as the model wrote it (without the prompt's sign-off)
    earlier: tuple[dict[str, str], ...] = ()  # the history before that question (a follow-up's query rewrite)


def continuation_of(message: str, history: list[dict[str, str]], *, last_answer_cut: bool) -> Continuation | None:
    """The continuation this message asks for, or None (a normal turn)."""
    if not last_answer_cut or not asks_to_continue(message) or not history:
        return None
    if history[-1].get("role") != "assistant" or not str(history[-1].get("content") or "").strip():
        return None
    asked = next((i for i in range(len(history) - 1, -1, -1) if history[i].get("role") == "user"), None)
    if asked is None:
        return Continuation(question=message, cut=str(history[-1]["content"]))
    return Continuation(question=str(history[asked].get("content") or ""), cut=str(history[-1]["content"]),
                        earlier=tuple(history[:asked]))


def without_signoff(answer: str, signoff: str) -> str:
    """The cut answer as the model wrote it: the prompt's sign-off (appended by the pipeline) taken off."""
    answer, signoff = answer.rstrip(), signoff.strip()
    return answer[: -len(signoff)].rstrip() if signoff and answer.endswith(signoff) else answer


def overlap(cut: str, text: str) -> int:
    """How much of the start of `text` repeats the end of `cut`: the longest prefix of `text` that is a suffix of
    `cut` starting at a word (the whole cut answer, when the model started over and wrote it again)."""
    cut = cut.rstrip()
    for k in range(min(len(cut), len(text)), 0, -1):
        start = len(cut) - k
        if (start == 0 or not cut[start - 1].isalnum()) and cut[start:] == text[:k] and text[:k].strip():
            return k
    return 0


def could_still_overlap(cut: str, text: str) -> bool:
    """Whether more of the stream could make `text` a longer overlap: it is still part of the cut answer."""
    return len(text) <= len(cut) and text in cut


def join(cut: str, continuation: str) -> str:
    """The cut answer and its continuation as one answer: the continuation starts with what separates them."""
    return cut.rstrip() + continuation


def separator(cut: str, text: str) -> str:
    """What goes between the cut answer and a continuation that repeats none of it: a space, a line break before
    a list item or heading, nothing before punctuation or after an opening bracket."""
    if not cut or not text or text[0].isspace() or text[0] in ".,;:!?)]" or cut[-1] in "([":
        return ""
    return "\n" if _NEW_BLOCK.match(text) else " "


def _without_overlap(cut: str, held: str) -> str:
    """The start of a continuation without what it repeats, and with what separates it from the cut answer."""
    lead = len(held) - len(held.lstrip())
    k = overlap(cut, held[lead:])
    return held[lead + k:] if k else separator(cut, held) + held


async def trimmed(cut: str, pieces: AsyncIterator[str], *, passthrough: str = "") -> AsyncIterator[str]:
    """`pieces` without what they repeat of `cut` at their start; held back only while they still could be such
    a repeat. `passthrough`: a piece (the prompt's sign-off) passed on as it is, once the text before it is."""
    cut = cut.rstrip()
    held, deciding = "", True
    async with aclosing(pieces) as stream:  # closed with this one: the model call stops
        async for piece in stream:
            if deciding and not (passthrough and piece == passthrough):
                held += piece
                if could_still_overlap(cut, held.lstrip()):
                    continue
            if deciding:
                rest, held, deciding = _without_overlap(cut, held), "", False
                if rest:
                    yield rest
                if not (passthrough and piece == passthrough):
                    continue
            yield piece
    if deciding and (rest := _without_overlap(cut, held)):
        yield rest
