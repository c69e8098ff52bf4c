"""HTML -> blocks: h1..h6 become headings, paragraphs become text, scripts and styles are skipped (stdlib
html.parser: no network, no external parser).

A list (`<ol>`, `<ul>`, `<dl>`) becomes one block with one line per item, numbered or bulleted as the browser
shows it and indented when nested, so the chunker keeps the list together and each item with its text (a
`<p>` or `<br>` inside an item does not cut it). A table row becomes one block, its cells joined by " | ".
A paragraph that is bold from end to end is marked as a label: it belongs to the text after it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from backend.knowledge.blocks import LABEL_MAX_WORDS, Block, ParsedDocument

_LISTS = {"ol", "ul", "dl"}
_CELLS = {"td", "th"}
_EMPHASIS = {"b", "strong"}


class _HtmlBlocks(HTMLParser):
    _BLOCK = {"p", "li", "td", "th", "div", "section", "article", "pre", "blockquote", "br", "tr", "dd", "dt",
              "table", "thead", "tbody", "tfoot", "caption", "hr", "header", "footer", "main", "nav", "aside"}
    _SKIP = {"script", "style", "noscript", "template", "svg", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title: str | None = None
        self._buf: list[str] = []
        self._bold_chars = 0  # how much of the buffered text sat inside <b>/<strong>
        self._bold_depth = 0
        self._level = 0
        self._skip = 0
        self._in_title = False
        self._lists: list[list] = []  # open lists, innermost last: [tag, items so far]
        self._row: list[str] | None = None  # the cells of the open table row

    def _text(self) -> str:
        """The buffered text; its only line breaks are list items, whose indentation (nesting) is kept."""
        lines = []
        for line in "".join(self._buf).split("\n"):
            body = re.sub(r"\s+", " ", line).strip()
            if body:
                depth = (len(line) - len(line.lstrip(" "))) // 2  # _start_item indents by two spaces a level
                lines.append("  " * depth + body)
        return "\n".join(lines)

    def _flush(self, *, list_ended: bool = False) -> None:
        text = self._text()
        if text:
            label = (not list_ended and self._level == 0 and "\n" not in text
                     and len(text.split()) <= LABEL_MAX_WORDS and self._bold_chars >= len(re.sub(r"\s", "", text)))
            self.blocks.append(Block(text=text, level=self._level, label=label))
        self._buf, self._level, self._bold_chars = [], 0, 0

    def _end_cell(self) -> None:
        if self._row is not None:
            text = self._text()
            if text:
                self._row.append(text.replace("\n", " "))
            self._buf, self._bold_chars = [], 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self._SKIP:
            self._skip += 1
        elif tag in _EMPHASIS:
            self._bold_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._level = int(tag[1])
        elif tag in _LISTS:
            if not self._lists:
                self._flush()
            start = dict(attrs).get("start") or ""
            self._lists.append([tag, int(start) - 1 if start.strip().lstrip("-").isdigit() else 0])
        elif self._lists and tag in ("li", "dt", "dd"):
            self._start_item(tag)
        elif self._lists and tag in self._BLOCK:
            self._buf.append(" ")  # a paragraph or line break inside an item is still that item
        elif tag == "tr":
            self._flush()
            self._row = []
        elif tag in _CELLS and self._row is not None:
            self._end_cell()
        elif self._row is not None and tag in self._BLOCK and tag != "table":
            self._buf.append(" ")  # likewise inside a table cell
        elif tag in self._BLOCK:
            self._flush()

    def _start_item(self, tag: str) -> None:
        kind, depth = self._lists[-1][0], len(self._lists) - 1
        if tag == "dd":
            self._buf.append(" " if self._text().endswith(":") else ": ")
            return
        self._lists[-1][1] += 1
        marker = f"{self._lists[-1][1]}." if kind == "ol" else "-"
        self._buf.append(f"\n{'  ' * depth}{marker} ")

    def handle_endtag(self, tag) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _EMPHASIS:
            self._bold_depth = max(0, self._bold_depth - 1)
        elif tag in _LISTS and self._lists:
            self._lists.pop()
            if not self._lists:
                self._flush(list_ended=True)
        elif self._lists and tag in self._BLOCK:
            return
        elif tag in _CELLS and self._row is not None:
            self._end_cell()
        elif tag == "tr" and self._row is not None:
            self._end_row()
        elif self._row is not None and tag in self._BLOCK and tag != "table":
            return
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCK:
            self._flush()

    def _end_row(self) -> None:
        self._end_cell()
        row, self._row = self._row, None
        if row:
            self.blocks.append(Block(text=" | ".join(dict.fromkeys(row))))

    def handle_data(self, data) -> None:
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif not self._skip:
            data = re.sub(r"\s+", " ", data)  # the document's own line breaks are not structure
            self._buf.append(data)
            if self._bold_depth:
                self._bold_chars += len(re.sub(r"\s", "", data))


def parse_html(text: str) -> ParsedDocument:
    parser = _HtmlBlocks()
    parser.feed(text)
    parser.close()
    if parser._row is not None:
        parser._end_row()
    parser._flush(list_ended=bool(parser._lists))
    return ParsedDocument(content_type="html", blocks=parser.blocks, title=parser.title or None)
