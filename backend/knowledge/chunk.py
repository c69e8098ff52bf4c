"""Split parsed blocks into token-sized chunks that respect headings and paragraphs, with overlap.

A heading always starts a new chunk, so a chunk never straddles two sections; paragraphs are kept whole
when they fit, split at sentences (then words) when they do not. Consecutive chunks of one section
share ~`overlap` tokens of whole sentences, so an answer that spans a boundary is still found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from backend.knowledge.parse import Block

TokenCounter = Callable[[str], int]
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+(?=[\"'(\[*_A-Z0-9-])|\n+")


def approx_tokens(text: str) -> int:
    """~WordPiece count without a tokenizer: words plus punctuation, a little generous on purpose."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@dataclass
class Chunk:
    index: int
    text: str  # the passage as it appears in the document (what citations quote)
    section: str | None
    page: int | None
    tokens: int

    def embed_text(self, title: str) -> str:
        """What is embedded and keyword-indexed: the passage with its document title and section."""
        head = title if not self.section else f"{title} — {self.section}"
        return f"{head}\n{self.text}"


@dataclass
class _Unit:
    text: str
    tokens: int
    para: int
    page: int | None


def _split_long(text: str, count: TokenCounter, max_tokens: int) -> list[str]:
    pieces: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE.split(text)):
        if not sentence:
            continue
        if count(sentence) <= max_tokens:
            pieces.append(sentence)
            continue
        words, current = sentence.split(), []
        for word in words:
            if current and count(" ".join([*current, word])) > max_tokens:
                pieces.append(" ".join(current))
                current = []
            current.append(word)
        if current:
            pieces.append(" ".join(current))
    return pieces


def chunk_blocks(blocks: list[Block], *, count_tokens: TokenCounter = approx_tokens, max_tokens: int = 200,
                 overlap: int = 40) -> list[Chunk]:
    if max_tokens < 16:
        raise ValueError("max_tokens must be at least 16")
    overlap = max(0, min(overlap, max_tokens // 2))
    chunks: list[Chunk] = []
    headings: dict[int, str] = {}
    current: list[_Unit] = []
    para_no = 0

    def section() -> str | None:
        levels = sorted(headings)
        # The two deepest headings name the place well enough ("Discounts > Approval thresholds").
        names = [headings[lv] for lv in levels][-2:]
        return " > ".join(names) if names else None

    def emit(units: list[_Unit]) -> None:
        parts: list[str] = []
        for i, unit in enumerate(units):
            sep = "" if i == 0 else (" " if unit.para == units[i - 1].para else "\n\n")
            parts.append(sep + unit.text)
        text = "".join(parts).strip()
        if text:
            page = next((u.page for u in units if u.page is not None), None)
            chunks.append(Chunk(index=len(chunks), text=text, section=section(), page=page,
                                tokens=sum(u.tokens for u in units)))

    def flush(carry: bool) -> None:
        nonlocal current
        if not current:
            return
        emit(current)
        if not carry or overlap == 0:
            current = []
            return
        tail: list[_Unit] = []
        total = 0
        for unit in reversed(current):
            if total + unit.tokens > overlap:
                break
            tail.insert(0, unit)
            total += unit.tokens
        current = tail if len(tail) < len(current) else []

    for block in blocks:
        if block.level > 0:
            flush(carry=False)
            for lv in [lv for lv in headings if lv >= block.level]:
                del headings[lv]
            headings[block.level] = block.text.strip()[:200]
            continue
        para_no += 1
        text = block.text.strip()
        tokens = count_tokens(text)
        pieces = [text] if tokens <= max_tokens else _split_long(text, count_tokens, max_tokens)
        for piece in pieces:
            unit = _Unit(text=piece, tokens=tokens if len(pieces) == 1 else count_tokens(piece), para=para_no,
                         page=block.page)
            if current and sum(u.tokens for u in current) + unit.tokens > max_tokens:
                flush(carry=True)
                # The carried overlap must leave room for the new unit.
                while current and sum(u.tokens for u in current) + unit.tokens > max_tokens:
                    current.pop(0)
            current.append(unit)
    flush(carry=False)
    return chunks
