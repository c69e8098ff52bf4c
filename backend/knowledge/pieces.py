"""Cut one block of body text into pieces: the smallest spans a chunk may start or end at.

A list is cut at its items (an item keeps its continuation lines), fenced code at its lines, prose at its
sentences. A piece that only announces what follows — a bare list marker ("1."), a bold label
("**Stage 2 – Qualified (20%)**:"), a lead-in ending with a colon ("The standard timeline is:") — is glued to
the next piece, so a chunk never ends on a label whose text went to the next chunk. Pieces longer than the
token budget are cut further: an item at its sentences, a sentence at its words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

TokenCounter = Callable[[str], int]

# A list item's first line: a bullet or an ordinal ("1.", "2)", "a)"), then its text.
LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+•◦▪‣]|\d{1,3}[.)]|[a-z]\))[ \t]+\S")
# Where prose may be cut: after a sentence's end (or a colon/semicolon), before what can start a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+(?=[\"'(\[*_A-Z0-9-])")
_BARE_MARKER = re.compile(r"^(?:[-*+•◦▪‣]|\d{1,3}[.)]|[a-z]\))$")
_EMPHASIS_ONLY = re.compile(r"^(\*\*|__|\*|_)[^*_\n]+\1\s*[:.]?$")


@dataclass(frozen=True)
class Piece:
    text: str
    tokens: int
    sep: str  # what joins it to the previous piece of the same block: "\n" (items, code lines) or " "


def is_list(text: str) -> bool:
    return any(LIST_ITEM.match(line) for line in text.split("\n"))


def is_label(text: str) -> bool:
    """Text that only introduces what follows it: a bare list marker, an emphasised label, a lead-in with a colon."""
    text = text.strip()
    return bool(_BARE_MARKER.match(text) or _EMPHASIS_ONLY.match(text) or text.endswith(":"))


def split_block(text: str, count: TokenCounter, max_tokens: int) -> list[Piece]:
    text = text.strip()
    if text.startswith("```"):
        spans = [(line, "\n") for line in text.split("\n")]
    elif is_list(text):
        spans = _items(text)
    else:
        spans = _sentences(text)
    pieces: list[Piece] = []
    for span, sep in spans:
        pieces.extend(_fit(span, sep, count, max_tokens))
    return glue_labels(pieces, count, max_tokens)


def glue_labels(pieces: list[Piece], count: TokenCounter, max_tokens: int) -> list[Piece]:
    """Join every label to the piece after it, when the two fit one chunk together."""
    out: list[Piece] = []
    for piece in pieces:
        if out and is_label(out[-1].text):
            joined = out[-1].text + piece.sep + piece.text
            tokens = count(joined)
            if tokens <= max_tokens:
                out[-1] = Piece(joined, tokens, out[-1].sep)
                continue
        out.append(piece)
    return out


def _items(text: str) -> list[tuple[str, str]]:
    """Each list item with the lines that continue it; lines before the first item (a lead-in) stay together."""
    items: list[list[str]] = []
    for line in text.split("\n"):
        if LIST_ITEM.match(line) or not items:
            items.append([line])
        else:
            items[-1].append(line)
    return [("\n".join(lines).strip(), "\n") for lines in items]


def _sentences(text: str) -> list[tuple[str, str]]:
    spans: list[tuple[str, str]] = []
    start, sep = 0, " "
    for match in _SENTENCE_END.finditer(text):
        spans.append((text[start:match.start()], sep))
        start, sep = match.end(), "\n" if "\n" in match.group() else " "
    spans.append((text[start:], sep))
    return [(s.strip(), sep) for s, sep in spans if s.strip()]


def _fit(span: str, sep: str, count: TokenCounter, max_tokens: int) -> list[Piece]:
    """The span as one piece when it fits the budget; else its sentences (labels glued), else its words."""
    tokens = count(span)
    if tokens <= max_tokens:
        return [Piece(span, tokens, sep)]
    sentences = _sentences(span)
    if len(sentences) > 1:
        parts = [p for s, s_sep in sentences for p in _fit(s, s_sep, count, max_tokens)]
        parts = glue_labels(parts, count, max_tokens)
        return [Piece(parts[0].text, parts[0].tokens, sep), *parts[1:]]
    pieces: list[Piece] = []
    words: list[str] = []
    total = 0
    for word in span.split():
        n = count(word)  # WordPiece never merges across whitespace, so the words' counts add up
        if words and total + n > max_tokens:
            pieces.append(Piece(" ".join(words), total, sep if not pieces else " "))
            words, total = [], 0
        words.append(word)
        total += n
    if words:
        pieces.append(Piece(" ".join(words), total, sep if not pieces else " "))
    return pieces
