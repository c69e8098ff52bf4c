"""Split parsed blocks into token-sized chunks that respect headings, paragraphs and lists, with overlap.

A heading always starts a new chunk, so a chunk never straddles two sections. Within a section, blocks are
packed together up to the budget: a block that fits (a paragraph, a whole list) stays in one chunk, one that
does not is cut at its pieces (backend/knowledge/pieces.py: list items, sentences, never a bare "1." or a
label without its text). A label that ends a block ("Example response envelope:", a bold line) travels with
the block after it. A chunk with fewer than max_tokens/4 tokens of its own is avoided — it is what a reader
would call a scrap: the next block is poured into it piece by piece instead of starting a chunk of its own,
and a small last chunk of a section takes more of the chunk before it as context. Consecutive chunks of one
section share ~`overlap` tokens of whole pieces, so an answer that spans a boundary is still found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from backend.knowledge.blocks import Block
from backend.knowledge.pieces import TokenCounter, is_label, split_block

# Below max_tokens // MIN_SHARE tokens of its own, a chunk is a scrap unless it is all its section has.
MIN_SHARE = 4
_BLOCK_SEP = "\n\n"


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
    sep: str  # what joins it to the unit before it in a chunk: the piece's own, or a blank line between blocks
    page: int | None
    fresh: bool = True  # False: repeated from the previous chunk as overlap


class _Packer:
    """Fills chunks of one section after another with the units of its blocks."""

    def __init__(self, max_tokens: int, overlap: int) -> None:
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.min_tokens = max_tokens // MIN_SHARE
        self.chunks: list[Chunk] = []
        self.section: str | None = None
        self.current: list[_Unit] = []
        self.previous: list[_Unit] = []  # the section's last emitted chunk (context for a small one after it)

    @property
    def total(self) -> int:
        return sum(u.tokens for u in self.current)

    @property
    def fresh(self) -> int:
        return sum(u.tokens for u in self.current if u.fresh)

    def add_block(self, units: list[_Unit]) -> None:
        size = sum(u.tokens for u in units)
        if self.total + size <= self.max_tokens:
            self.current.extend(units)
            return
        if size <= self.max_tokens:
            if self.fresh >= self.min_tokens:
                self._close(carry=True)
            self._make_room(size)
            if self.total + size <= self.max_tokens:
                self.current.extend(units)
                return
        # Too big for any chunk, or what is open is too small to close: split the block at its pieces.
        for unit in units:
            self._add_piece(unit)

    def end_section(self) -> None:
        if self.fresh:
            self._close(carry=False)
        self.current, self.previous = [], []

    def _add_piece(self, unit: _Unit) -> None:
        if self.total + unit.tokens > self.max_tokens and self.fresh < self.min_tokens:
            self._make_room(unit.tokens)  # a small chunk gives up its overlap before it gives up the piece
        if self.total + unit.tokens > self.max_tokens:
            if self.fresh:
                self._close(carry=True)
            self._make_room(unit.tokens)
        self.current.append(unit)

    def _make_room(self, tokens: int) -> None:
        """Drop carried-over overlap (never the chunk's own text) until `tokens` more fit."""
        while self.current and not self.current[0].fresh and self.total + tokens > self.max_tokens:
            self.current.pop(0)

    def _close(self, *, carry: bool) -> None:
        if self.fresh < self.min_tokens and self.overlap:
            self._widen_context()
        units = self.current
        text = (units[0].text + "".join(u.sep + u.text for u in units[1:])).strip()
        page = next((u.page for u in units if u.page is not None), None)
        self.chunks.append(Chunk(index=len(self.chunks), text=text, section=self.section, page=page,
                                 tokens=sum(u.tokens for u in units)))
        self.previous = units
        self.current = []
        if carry and self.overlap:
            tail: list[_Unit] = []
            for unit in reversed(units):
                if sum(u.tokens for u in tail) + unit.tokens > self.overlap:
                    break
                tail.insert(0, replace(unit, fresh=False))
            self.current = tail if len(tail) < len(units) else []

    def _widen_context(self) -> None:
        """A small chunk repeats more of the chunk before it (up to the minimum, within the budget)."""
        carried = next((i for i, u in enumerate(self.current) if u.fresh), len(self.current))
        pool = self.previous[:len(self.previous) - carried]
        while pool and self.total < self.min_tokens and self.total + pool[-1].tokens <= self.max_tokens:
            self.current.insert(0, replace(pool.pop(), fresh=False))


def _glue_labels_across(groups: list[tuple[list[_Unit], bool]], count: TokenCounter,
                        max_tokens: int) -> list[list[_Unit]]:
    """A block that ends with a label (or is one) hands the label to the next block's first piece."""
    for (here, label_block), (after, _) in zip(groups, groups[1:], strict=False):
        if here and after and (is_label(here[-1].text) or (label_block and len(here) == 1)):
            label, first = here[-1], after[0]
            joined = label.text + _BLOCK_SEP + first.text
            tokens = count(joined)
            if tokens <= max_tokens:
                after[0] = _Unit(joined, tokens, label.sep, label.page if label.page is not None else first.page)
                here.pop()
    return [units for units, _ in groups if units]


def chunk_blocks(blocks: list[Block], *, count_tokens: TokenCounter = approx_tokens, max_tokens: int = 200,
                 overlap: int = 40) -> list[Chunk]:
    if max_tokens < 16:
        raise ValueError("max_tokens must be at least 16")
    packer = _Packer(max_tokens, max(0, min(overlap, max_tokens // 2)))
    headings: dict[int, str] = {}
    groups: list[tuple[list[_Unit], bool]] = []  # the current section's blocks: (units, is a label)

    def pack_section() -> None:
        for group in _glue_labels_across(groups, count_tokens, max_tokens):
            packer.add_block(group)
        packer.end_section()
        groups.clear()

    for block in blocks:
        if block.level > 0:
            pack_section()
            for lv in [lv for lv in headings if lv >= block.level]:
                del headings[lv]
            headings[block.level] = block.text.strip()[:200]
            # The two deepest headings name the place well enough ("Discounts > Approval thresholds").
            names = [headings[lv] for lv in sorted(headings)][-2:]
            packer.section = " > ".join(names) if names else None
            continue
        pieces = split_block(block.text, count_tokens, max_tokens)
        groups.append(([_Unit(p.text, p.tokens, _BLOCK_SEP if i == 0 else p.sep, block.page)
                        for i, p in enumerate(pieces)], block.label))
    pack_section()
    return packer.chunks
