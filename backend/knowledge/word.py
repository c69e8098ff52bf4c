"""DOCX -> blocks, in body order: paragraphs and tables interleaved, so a table keeps the section it is in.

Heading styles (and Title) become headings. A numbered or bulleted paragraph (numbering on the paragraph or
on its style, e.g. "List Number") gets the marker Word shows for it ("1.", "a)", "-"), indented by its level,
and a run of such paragraphs becomes one block with one line per item — python-docx's text has no markers,
and without them the chunker could not keep a list together or an item with its number. A short paragraph
that is bold from end to end is marked as a label (it belongs to the text after it).
"""

from __future__ import annotations

import io
import re

from backend.errors import Invalid
from backend.knowledge.blocks import LABEL_MAX_WORDS, Block, ParsedDocument

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class _Numbering:
    """Markers for numbered paragraphs, counted per list and level the way Word counts them."""

    def __init__(self, document) -> None:
        from docx.oxml.ns import qn

        self._qn = qn
        try:
            self._root = document.part.numbering_part.element
        except Exception:  # no numbering definitions: every list is shown as bullets
            self._root = None
        self._counters: dict[str, dict[int, int]] = {}

    def _format(self, num_id: str, level: int) -> tuple[str, int]:
        """(numFmt, start) of a list's level: 'bullet', 'decimal', 'lowerLetter', ..."""
        qn, root = self._qn, self._root
        if root is None:
            return "bullet", 1
        num = next((n for n in root.iterchildren(qn("w:num")) if n.get(qn("w:numId")) == num_id), None)
        abstract_id = num.find(qn("w:abstractNumId")) if num is not None else None
        if abstract_id is None:
            return "bullet", 1
        abstract = next((a for a in root.iterchildren(qn("w:abstractNum"))
                         if a.get(qn("w:abstractNumId")) == abstract_id.get(qn("w:val"))), None)
        lvl = next((lv for lv in abstract.iterchildren(qn("w:lvl")) if lv.get(qn("w:ilvl")) == str(level)),
                   None) if abstract is not None else None
        if lvl is None:
            return "bullet", 1
        fmt, start = lvl.find(qn("w:numFmt")), lvl.find(qn("w:start"))
        start_value = start.get(qn("w:val")) if start is not None else "1"
        return ((fmt.get(qn("w:val")) if fmt is not None else "decimal") or "decimal",
                int(start_value) if (start_value or "").isdigit() else 1)

    def marker(self, num_id: str, level: int) -> str:
        fmt, start = self._format(num_id, level)
        if fmt in ("bullet", "none"):
            return "-"
        levels = self._counters.setdefault(num_id, {})
        levels[level] = levels.get(level, start - 1) + 1
        for deeper in [lv for lv in levels if lv > level]:  # a new item restarts the levels below it
            del levels[deeper]
        n = levels[level]
        # Letters as "a)"; roman numerals and other formats as plain numbers (the order is what matters).
        return f"{_LETTERS[(n - 1) % 26]})" if fmt == "lowerLetter" else f"{n}."


def _list_level(paragraph) -> tuple[str, int] | None:
    """(list id, level) when the paragraph is numbered or bulleted, from itself or its style chain."""
    num_id: str | None = None
    level: int | None = None
    sources = [paragraph._p.pPr]
    style = paragraph.style
    while style is not None:
        sources.append(style.element.pPr)
        style = style.base_style
    for ppr in sources:
        num_pr = ppr.numPr if ppr is not None else None
        if num_pr is None:
            continue
        if num_id is None and num_pr.numId is not None:
            num_id = str(num_pr.numId.val)
        if level is None and num_pr.ilvl is not None:
            level = int(num_pr.ilvl.val)
    if num_id is None or num_id == "0":  # numId 0 switches numbering off
        return None
    return num_id, level or 0


def _is_label(paragraph, text: str) -> bool:
    runs = [r for r in paragraph.runs if r.text.strip()]
    style_bold = bool(paragraph.style is not None and paragraph.style.font.bold)
    return (bool(runs) and len(text.split()) <= LABEL_MAX_WORDS
            and all(r.bold or (r.bold is None and style_bold) for r in runs))


def parse_docx(data: bytes) -> ParsedDocument:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise Invalid(f"the .docx cannot be read ({type(exc).__name__}: {str(exc)[:120]}): export it again",
                      code="corrupt_docx") from exc
    doc = ParsedDocument(content_type="docx")
    try:
        doc.title = (document.core_properties.title or "").strip() or None
    except Exception:
        doc.title = None
    numbering = _Numbering(document)
    items: list[str] = []  # the open list's lines

    def end_list() -> None:
        if items:
            doc.blocks.append(Block(text="\n".join(items)))
            items.clear()

    for part in document.iter_inner_content():
        if isinstance(part, Table):
            end_list()
            for row in part.rows:
                cells = [c.text.strip() for c in row.cells if c.text.strip()]
                if cells:
                    doc.blocks.append(Block(text=" | ".join(dict.fromkeys(cells))))
            continue
        text = part.text.strip()
        if not text:
            continue
        style = (part.style.name if part.style is not None else "") or ""
        match = re.match(r"Heading (\d)", style)
        level = int(match.group(1)) if match else (1 if style == "Title" else 0)
        in_list = _list_level(part) if level == 0 else None
        if in_list is not None:
            num_id, depth = in_list
            items.append(f"{'  ' * depth}{numbering.marker(num_id, depth)} {text}")
            continue
        end_list()
        doc.blocks.append(Block(text=text, level=level, label=level == 0 and _is_label(part, text)))
    end_list()
    return doc
