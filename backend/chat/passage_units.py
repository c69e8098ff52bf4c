"""Retrieved passages cut into the units an answer can quote: sentences of paragraphs, list items and table rows.

The grounded answer (backend/chat/grounded.py) picks among these units and the grounding check
(backend/chat/grounding_check.py) compares an answer's sentences with them. Markdown emphasis and code ticks are
dropped (the quote stays word for word otherwise); a table row is read with its header ("Growth — List price: $89
per user per month; …") so it still says what its numbers are; code blocks and headings are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.knowledge.retrieval import Citation

_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_RULE = re.compile(r"^\|[\s:|-]+\|$")
# A sentence ends at . ! ? followed by a space and something that starts a sentence ("e.g. the" stays whole,
# "$0.40" and "1.5" have no space after the dot).
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(`$€£*])")
_EMPHASIS = re.compile(r"\*\*|__|`")
_MARKER = re.compile(r"\s*\[\d+\]")
# Invisible characters: "[\u200b2\u200d]" reads as "[2]". Those with no meaning in any script go everywhere; the
# joiners and direction marks (Persian, Hindi, emoji, RTL) only inside a marker lookalike.
_INVISIBLE = re.compile("[\u200b\u2060-\u2064\ufeff\u00ad]")
_PAD = "[\\s\u200b-\u200f\u2060-\u2064\ufeff]*"
_HIDDEN_MARKER = re.compile(f"\\s*\\[{_PAD}\\d+{_PAD}\\]")


@dataclass
class Unit:
    """One quotable statement of a passage. `passage`: the index of its citation; `block`: the paragraph, list or
    table it belongs to (within the passage); `lead`: a sentence of the paragraph that introduces a list or table
    ("Every opportunity moves through seven stages.")."""

    text: str
    passage: int
    pos: int
    kind: str  # sentence | item | row
    block: int
    lead: bool = False

    @property
    def key(self) -> str:
        """The same statement in two overlapping passages keys the same."""
        return re.sub(r"\W+", " ", self.text.lower()).strip()


def clean(text: str) -> str:
    """Emphasis and code ticks dropped, and a passage's own "[1]" (a footnote, or text written to look like a
    marker): quoted, it would read as a marker of the answer's sources line, naming a source it is not."""
    return re.sub(r"\s+", " ", _INVISIBLE.sub("", _HIDDEN_MARKER.sub("", _EMPHASIS.sub("", text)))).strip()


def split_sentences(text: str) -> list[str]:
    """A paragraph's sentences (an answer's, too: its [n] markers stay with the sentence they follow)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def _blocks(quote: str) -> list[tuple[str, list[str]]]:
    """(kind, lines) blocks of a passage: `para`, `list` (one line per item), `table` (rows), code left out."""
    blocks: list[tuple[str, list[str]]] = []
    in_code = False
    for raw in quote.splitlines():
        line = raw.rstrip()
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or line.lstrip().startswith("#"):
            continue
        if not line.strip():
            blocks.append(("gap", []))
            continue
        kind = "table" if line.lstrip().startswith("|") else "list" if _LIST_ITEM.match(line) else "para"
        if blocks and blocks[-1][0] == kind:
            blocks[-1][1].append(line)
        elif blocks and blocks[-1][0] == "list" and kind == "para" and raw.startswith((" ", "\t")):
            blocks[-1][1][-1] += " " + line.strip()  # an item's continuation line
        else:
            blocks.append((kind, [line]))
    return [b for b in blocks if b[0] != "gap"]


def _rows(lines: list[str]) -> list[str]:
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    header: list[str] | None = None
    if len(lines) > 1 and _TABLE_RULE.match(lines[1].strip()):
        header, cells = cells[0], cells[2:]
    out = []
    for row in cells:
        if _TABLE_RULE.match("|" + "|".join(row) + "|") or not any(row):
            continue
        if header and len(header) == len(row):
            out.append(f"{row[0]} — " + "; ".join(f"{h}: {v}" for h, v in zip(header[1:], row[1:], strict=True)))
        else:
            out.append("; ".join(row))
    return out


def units(citations: list[Citation]) -> list[Unit]:
    out: list[Unit] = []
    for p, citation in enumerate(citations):
        pos = 0
        blocks = _blocks(citation.quote)
        for b, (kind, lines) in enumerate(blocks):
            if kind == "para":
                sentences = split_sentences(clean(" ".join(lines)))
                introduces = b + 1 < len(blocks) and blocks[b + 1][0] in ("list", "table")
                for s in sentences:
                    out.append(Unit(s, p, pos, "sentence", b, lead=introduces))
                    pos += 1
            else:
                texts = _rows(lines) if kind == "table" else [clean(_LIST_ITEM.sub("", ln)) for ln in lines]
                for text in texts:
                    if text:
                        out.append(Unit(clean(text), p, pos, "row" if kind == "table" else "item", b))
                        pos += 1
    return out
