"""HTML -> blocks: h1..h6 become headings, paragraphs/list items/cells become text; scripts and styles are
skipped (stdlib html.parser: no network, no external parser)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from backend.knowledge.blocks import Block, ParsedDocument

# -- HTML ------------------------------------------------------------------------------------------------------


class _HtmlBlocks(HTMLParser):
    _BLOCK = {"p", "li", "td", "th", "div", "section", "article", "pre", "blockquote", "br", "tr", "dd", "dt"}
    _SKIP = {"script", "style", "noscript", "template", "svg", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title: str | None = None
        self._buf: list[str] = []
        self._level = 0
        self._skip = 0
        self._in_title = False

    def _flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
        if text:
            self.blocks.append(Block(text=text, level=self._level))
        self._buf, self._level = [], 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self._SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._level = int(tag[1])
        elif tag in self._BLOCK:
            self._flush()

    def handle_endtag(self, tag) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCK:
            self._flush()

    def handle_data(self, data) -> None:
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif not self._skip:
            self._buf.append(data)


def parse_html(text: str) -> ParsedDocument:
    parser = _HtmlBlocks()
    parser.feed(text)
    parser.close()
    parser._flush()
    return ParsedDocument(content_type="html", blocks=parser.blocks, title=parser.title or None)
