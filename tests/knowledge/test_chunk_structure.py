"""Chunks keep the document's structure: a list item stays whole with its text, a label stays with what it
introduces, small blocks of one section are packed together, and no chunk is a scrap unless it is all its
section has. Checked on the real demo corpus with the real token counter, and on lists in md/html/docx/pdf."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from backend.knowledge.blocks import Block
from backend.knowledge.chunk import Chunk, chunk_blocks
from backend.knowledge.embed.local import LocalEmbedder
from backend.knowledge.parse import parse, sniff
from backend.knowledge.pieces import LIST_ITEM, is_label
from tests.knowledge.files import make_pdf

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def count_tokens():
    return LocalEmbedder().count_tokens  # only the tokenizer is loaded, not the model


def test_local_token_count_is_not_padded(count_tokens):
    # tokenizer.json pads to 128: a padded count made every passage weigh >= 128 of a 200-token chunk.
    assert count_tokens("1.") == 2
    assert count_tokens("No meeting yet.") == 4
    assert count_tokens("word " * 300) == 300  # and nothing is truncated


# -- the demo corpus, as `atrium seed-demo` chunks it -------------------------------------------------------------

CORPUS = sorted((ROOT / "demo" / "corpus").glob("*/*.md"))
MAX_TOKENS, OVERLAP = 200, 40  # ATRIUM_CHUNK_TOKENS / ATRIUM_CHUNK_OVERLAP defaults
MIN_TOKENS = MAX_TOKENS // 4  # a chunk smaller than this is a scrap, unless it is its whole section


def _chunks_of(path: Path, count_tokens) -> list[Chunk]:
    data = path.read_bytes()
    return chunk_blocks(parse(data, sniff(data)).blocks, count_tokens=count_tokens, max_tokens=MAX_TOKENS,
                        overlap=OVERLAP)


def _sections(markdown: str) -> dict[str, str]:
    """Each heading's own body text (up to the next heading), keyed by the heading."""
    out: dict[str, str] = {}
    heading = None
    for line in markdown.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            out[heading] = ""
        elif heading is not None:
            out[heading] += line + "\n"
    return out


def test_demo_playbook_keeps_every_stage_whole(count_tokens):
    path = ROOT / "demo/corpus/sales/sales-playbook.md"
    chunks = _chunks_of(path, count_tokens)
    stages = [line for line in path.read_text().splitlines() if re.match(r"\d\. \*\*Stage \d", line)]
    assert len(stages) == 7
    for stage in stages:  # "3. **Stage 2 – Qualified (20%)**: NORTH documented, AE accepted the opportunity."
        assert any(stage in c.text for c in chunks), f"no chunk holds the whole item {stage!r}"
    stage2 = [c for c in chunks if "Stage 2 – Qualified" in c.text]
    assert stage2 and all("NORTH documented, AE accepted the opportunity." in c.text for c in stage2)
    assert all(c.section == "Northwind Analytics Sales Playbook > Pipeline Stages" for c in stage2)
    assert len(chunks) <= 16  # it was 32 pieces, 11 of them under 40 characters


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_demo_corpus_has_no_scraps_and_keeps_items_and_sections(path, count_tokens):
    source = path.read_text()
    sections = _sections(source)
    chunks = _chunks_of(path, count_tokens)
    by_section: dict[str | None, list[Chunk]] = {}
    for c in chunks:
        by_section.setdefault(c.section, []).append(c)
    for c in chunks:
        assert count_tokens(c.text) <= MAX_TOKENS and c.tokens <= MAX_TOKENS
        own = sections[c.section.split(" > ")[-1]]
        # the citation's section is where the text really is
        assert c.text.split("\n")[0][:80] in own, (c.section, c.text[:80])
        whole_section = len(by_section[c.section]) == 1
        assert c.tokens >= MIN_TOKENS or whole_section, f"scrap chunk {c.text!r}"
        assert not is_label(c.text.split("\n")[-1]), f"chunk ends on a label: {c.text[-60:]!r}"
    for line in source.splitlines():
        if LIST_ITEM.match(line):  # every list item is in some chunk with all of its text
            assert any(line.strip() in c.text for c in chunks), line


def test_small_blocks_of_a_section_share_a_chunk():
    # seven one-line paragraphs: one chunk, not seven
    blocks = [Block("Policy", level=1), *(Block(f"Rule {i}: keep receipts for {i} years.") for i in range(7))]
    (chunk,) = chunk_blocks(blocks, max_tokens=200, overlap=40)
    assert chunk.text.count("Rule") == 7 and chunk.section == "Policy"


def test_a_small_last_chunk_takes_context_from_the_one_before():
    long = " ".join(f"Sentence {i} explains step {i} of the close." for i in range(16))  # 144 tokens
    tail = "The close is done and the books are locked."  # 10 tokens: does not fit after it
    chunks = chunk_blocks([Block("Close", level=1), Block(long), Block(tail)], max_tokens=150, overlap=20)
    assert len(chunks) == 2 and chunks[-1].text.endswith(tail)
    # 20 tokens of overlap + the tail would be a scrap: the chunk repeats more of the one before instead
    assert chunks[-1].tokens >= 150 // 4 and all(c.tokens <= 150 for c in chunks)
    assert chunks[-1].text.startswith("Sentence 13 explains")  # 3 whole sentences of context, not 2


# -- lists and labels in each format --------------------------------------------------------------------------------

STAGES = [("Stage 0 – Prospect (0%)", "SDR has identified the account and at least one contact. No meeting yet."),
          ("Stage 1 – Discovery (10%)", "First meeting held. The SDR completes the discovery note within 24 hours."),
          ("Stage 2 – Qualified (20%)", "NORTH documented, AE accepted the opportunity."),
          ("Stage 3 – Technical Validation (40%)", "SE-led demo and, where needed, a proof of value (POV) limited "
           "to 21 calendar days and no more than three success criteria.")]


def _assert_items_whole(chunks: list[Chunk], items: list[str]) -> None:
    for item in items:
        assert any(item in c.text for c in chunks), f"{item!r} is not whole in any chunk"
    for c in chunks:
        assert not is_label(c.text.split("\n")[-1]), f"chunk ends on a label: {c.text!r}"


def test_markdown_list_items_keep_their_text_when_the_list_is_split():
    md = "# Playbook\n\n## Stages\n\nEvery opportunity moves through these stages:\n\n" + "".join(
        f"{i + 1}. **{name}**: {text}\n" for i, (name, text) in enumerate(STAGES))
    # a budget smaller than the list: it must be cut between items, never inside one
    chunks = chunk_blocks(parse(md.encode(), "markdown").blocks, max_tokens=60, overlap=10)
    _assert_items_whole(chunks, [f"{i + 1}. **{n}**: {t}" for i, (n, t) in enumerate(STAGES)])
    assert "Every opportunity moves through these stages:\n\n1. **Stage 0" in chunks[0].text
    assert all(c.section == "Playbook > Stages" for c in chunks)


def test_markdown_loose_list_and_continuation_lines_stay_with_their_item():
    md = ("# Runbook\n\n## Severities\n\n- **SEV1 – Critical**: complete outage.\n  Page immediately, 24/7.\n\n"
          "- **SEV2 – Major**:\n\n  A core feature is down for many customers.\n\n- **SEV3 – Minor**: a workaround "
          "exists.\n\nIf unsure, pick the higher one.\n")
    blocks = parse(md.encode(), "markdown").blocks
    assert [b.text for b in blocks[2:]] == [
        "- **SEV1 – Critical**: complete outage.\n  Page immediately, 24/7.\n\n- **SEV2 – Major**:\n\n"
        "  A core feature is down for many customers.\n\n- **SEV3 – Minor**: a workaround exists.",
        "If unsure, pick the higher one."]
    chunks = chunk_blocks(blocks, max_tokens=24, overlap=0)
    texts = [c.text for c in chunks]
    assert any("SEV1 – Critical**: complete outage.\n  Page immediately, 24/7." in t for t in texts)
    assert any("SEV2 – Major**:\n\n  A core feature is down for many customers." in t for t in texts)


def test_a_label_paragraph_stays_with_the_text_under_it():
    blocks = [Block("Severity", level=1), Block("x " * 150), Block("**Stage 2 – Qualified (20%)**:"),
              Block("NORTH documented, AE accepted the opportunity."), Block("Example:"),
              Block("CSV export fails for files larger than 1 GB."), Block("Note", label=True),
              Block("Bold lines from .docx and .html are labels too.")]
    chunks = chunk_blocks(blocks, max_tokens=160, overlap=0)
    _assert_items_whole(chunks, ["**Stage 2 – Qualified (20%)**:\n\nNORTH documented",
                                 "Example:\n\nCSV export fails", "Note\n\nBold lines"])


def test_html_lists_are_one_block_with_numbered_items():
    items = "".join(f"<li><strong>{n}</strong>:<br>\n{t}</li>" for n, t in STAGES)
    html = (f"<html><body><h1>Playbook</h1><h2>Stages</h2><p>Every opportunity moves through:</p>"
            f"<ol>{items}</ol><ul><li><p>Nested</p><ul><li>inner item</li></ul></li></ul>"
            f"<p><b>Rule of thumb</b></p><p>Stale after 45 days.</p>"
            f"<table><tr><th>Stage</th><th>Probability</th></tr><tr><td>Qualified</td><td>20%</td></tr></table>"
            f"</body></html>").encode()
    blocks = parse(html, "html").blocks
    expected = "\n".join(f"{i + 1}. {n}: {t}" for i, (n, t) in enumerate(STAGES))
    assert [(b.text, b.level, b.label) for b in blocks] == [
        ("Playbook", 1, False), ("Stages", 2, False), ("Every opportunity moves through:", 0, False),
        (expected, 0, False), ("- Nested\n  - inner item", 0, False), ("Rule of thumb", 0, True),
        ("Stale after 45 days.", 0, False), ("Stage | Probability", 0, False), ("Qualified | 20%", 0, False)]
    chunks = chunk_blocks(blocks, max_tokens=200, overlap=40)
    assert any(expected in c.text for c in chunks)  # the whole list, with its lead-in
    assert any("Every opportunity moves through:\n\n1. Stage 0" in c.text for c in chunks)
    _assert_items_whole(chunk_blocks(blocks, max_tokens=60, overlap=0), expected.split("\n"))


def test_docx_numbered_and_bulleted_paragraphs_keep_markers_and_body_order():
    import docx

    document = docx.Document()
    document.add_heading("Playbook", level=1)
    document.add_paragraph("Every opportunity moves through:")
    for name, text in STAGES:
        document.add_paragraph(f"{name}: {text}", style="List Number")
    document.add_paragraph("Owners:")
    document.add_paragraph("Sales Operations", style="List Bullet")
    document.add_paragraph("Revenue leadership", style="List Bullet")
    label = document.add_paragraph()
    label.add_run("Rule of thumb").bold = True
    document.add_paragraph("Stale after 45 days.")
    document.add_heading("Probabilities", level=1)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Qualified", "20%"
    document.add_heading("Territories", level=1)
    document.add_paragraph("Assigned by headquarters location.")
    out = io.BytesIO()
    document.save(out)
    blocks = parse(out.getvalue(), "docx").blocks
    expected = "\n".join(f"{i + 1}. {n}: {t}" for i, (n, t) in enumerate(STAGES))
    assert [(b.text, b.level, b.label) for b in blocks] == [
        ("Playbook", 1, False), ("Every opportunity moves through:", 0, False), (expected, 0, False),
        ("Owners:", 0, False), ("- Sales Operations\n- Revenue leadership", 0, False), ("Rule of thumb", 0, True),
        ("Stale after 45 days.", 0, False), ("Probabilities", 1, False), ("Qualified | 20%", 0, False),
        ("Territories", 1, False), ("Assigned by headquarters location.", 0, False)]
    chunks = chunk_blocks(blocks, max_tokens=200, overlap=40)
    assert any(expected in c.text for c in chunks)
    assert [c.section for c in chunks if "Qualified | 20%" in c.text] == ["Probabilities"]  # not "Territories"


def test_pdf_list_lines_stay_items():
    page = ("Every opportunity moves through these stages:\n1. Stage 0 - Prospect (0%): SDR has identified the "
            "account.\nNo meeting yet.\n2. Stage 1 - Discovery (10%): first meeting held.\n3. Stage 2 - Qualified "
            "(20%): NORTH documented.")
    (block,) = parse(make_pdf([page]), "pdf").blocks
    assert block.text == ("Every opportunity moves through these stages:\n1. Stage 0 - Prospect (0%): SDR has "
                          "identified the account. No meeting yet.\n2. Stage 1 - Discovery (10%): first meeting "
                          "held.\n3. Stage 2 - Qualified (20%): NORTH documented.") and block.page == 1
    chunks = chunk_blocks([block], max_tokens=30, overlap=0)
    _assert_items_whole(chunks, block.text.split("\n")[1:])
    assert all(c.page == 1 for c in chunks)
