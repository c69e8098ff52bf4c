"""What parsing produces: text blocks (headings and body text, with page numbers) of one document."""

from __future__ import annotations

from dataclasses import dataclass, field

LABEL_MAX_WORDS = 12  # a bold paragraph this short introduces what follows (a longer one is body text)


@dataclass
class Block:
    text: str
    page: int | None = None
    level: int = 0  # 0 = body text; 1..6 = a heading of that level
    # Body text that only introduces what follows it (a bold line): the chunker keeps it with the next block.
    label: bool = False


@dataclass
class ParsedDocument:
    content_type: str
    blocks: list[Block] = field(default_factory=list)
    title: str | None = None  # from the document itself (PDF metadata, first H1), when it has one
    pages: int | None = None
