"""Inline [n] markers of a generated answer that match its sources line: [n] is the n-th cited passage.

After the grounding check (grounding_check.py) each sentence knows the passage whose statement supports it. A
supported sentence the model left unmarked gets that passage's marker; a marker that names no cited passage ([7]
of five, [0]) is removed. Code blocks and table rows are left as written (a marker would break them).
"""

from __future__ import annotations

import re

_MARKER = re.compile(r"\s*\[(\d+)\]")
_END = re.compile(r"[.!?:]+[\"')*_]*$")


def fix_markers(sentence: str, *, sources: int, passage: int | None) -> str:
    """`sentence` with markers naming no source removed and, when it has none left, `passage`'s (an index of the
    citations: [passage + 1]) before its closing punctuation."""
    kept = _MARKER.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= sources else "", sentence)
    if passage is None or not 0 <= passage < sources or _MARKER.search(kept) or not kept.strip():
        return kept
    if kept.lstrip().startswith("|"):
        return kept
    end = _END.search(kept)
    at = end.start() if end else len(kept)
    return f"{kept[:at].rstrip()} [{passage + 1}]{kept[at:]}"


class Fences:
    """Whether the text streamed so far is inside a fenced code block (its lines are neither checked nor marked)."""

    def __init__(self) -> None:
        self.open = False

    def code(self, sentence: str) -> bool:
        """True for a fence line or a line inside a code block."""
        fences = len(re.findall(r"^\s*(?:```|~~~)", sentence, re.M))
        inside = self.open or bool(fences)
        self.open ^= fences % 2 == 1
        return inside
