"""A test case from a rated chat answer (the studio's Feedback tab, "Make a test case"): the question and the
earlier turns of the exchange, and a note saying how it was rated and what the answer was. The editor then says
what a good answer states; the case is stored only when they save it (EvalService.case_from_feedback)."""

from __future__ import annotations

import re
from typing import Any

from backend.evals.cases import CaseCreate

# The chat's last line saying who answered ("_Answer: quoted from the sources …_", ui/chat_text.py) is not part of
# what was answered; the note is one line in the case editor, so the answer's line breaks become spaces.
_ANSWERED_LINE = re.compile(r"\s*_Answer: [^\n]*_\s*$")


def _one_line(answer: str) -> str:
    return " ".join(_ANSWERED_LINE.sub("", answer).split())


def prefill(exchange: dict[str, Any]) -> CaseCreate:
    """The case a rated exchange (repositories.evals.rated_exchange) suggests, expecting nothing yet."""
    rating = {1: "rated helpful", 0: "rated not helpful"}.get(exchange["rating"], "not rated")
    note = f"From feedback on version {exchange['prompt_version'] or '?'}: {rating}"
    if exchange["comment"]:
        note += f" — \u201c{exchange['comment'][:500]}\u201d"
    note += f". The answer then was: {_one_line(exchange['answer'])[:1000]}"
    history = [t for t in exchange["history"] if t["content"].strip()][-20:]
    return CaseCreate(question=exchange["question"][:4000] or "?", note=note[:2000],
                      history=[{"role": t["role"], "content": t["content"][:8000]} for t in history])


def source(turn_id: int) -> dict[str, Any]:
    """What a case made from feedback records of where it came from."""
    return {"kind": "feedback", "turn_id": turn_id}
