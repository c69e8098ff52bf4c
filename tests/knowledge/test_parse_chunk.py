"""Parsing (type sniffed from the bytes, every bad-input case refused with a reason) and chunking."""

from __future__ import annotations

import pytest

from backend.errors import Invalid, PayloadTooLarge, UnsupportedMedia
from backend.knowledge.chunk import approx_tokens, chunk_blocks
from backend.knowledge.parse import Block, parse, validate
from tests.knowledge.files import corrupt_pdf, docx_zip_bomb, encrypt_pdf, make_docx, make_pdf, random_bytes

MB = 1024 * 1024


def test_pdf_keeps_pages_and_title():
    data = make_pdf(["Refunds are allowed within 30 days.", "Project ORIOLE-3 handles chargebacks."], title="Refunds")
    assert validate(data, "refunds.pdf", max_bytes=MB) == ("refunds.pdf", "pdf")
    doc = parse(data, "pdf")
    assert doc.title == "Refunds" and doc.pages == 2
    assert [(b.text, b.page) for b in doc.blocks] == [("Refunds are allowed within 30 days.", 1),
                                                       ("Project ORIOLE-3 handles chargebacks.", 2)]


def test_docx_headings_and_html_sections():
    data = make_docx([("Travel", ["Book economy."]), ("Meals", ["Up to 75 USD per day."])], title="Travel policy")
    doc = parse(data, validate(data, "t.docx", max_bytes=MB)[1])
    assert doc.title == "Travel policy"
    assert [(b.text, b.level) for b in doc.blocks] == [("Travel", 1), ("Book economy.", 0), ("Meals", 1),
                                                       ("Up to 75 USD per day.", 0)]
    html = b"<!doctype html><html><head><title>Guide</title><style>p{}</style></head><body><h1>Setup</h1>" \
           b"<p>Install the <b>agent</b>.</p><script>alert(1)</script><h2>Ports</h2><ul><li>443</li></ul></body>"
    assert validate(html, "guide.txt", max_bytes=MB)[1] == "html"  # the bytes decide, not the extension
    doc = parse(html, "html")
    assert doc.title == "Guide"
    assert [(b.text, b.level) for b in doc.blocks] == [("Setup", 1), ("Install the agent.", 0), ("Ports", 2),
                                                       ("- 443", 0)]  # a list item keeps its bullet


def test_markdown_and_text_are_sniffed():
    assert validate(b"# Title\n\nBody text.", "notes.md", max_bytes=MB)[1] == "markdown"
    assert validate("Plain words, caf\u00e9.".encode(), "notes.txt", max_bytes=MB)[1] == "text"
    doc = parse(b"# Title\n\nPara one\ncontinues.\n\n## Sub\n\nPara two.", "markdown")
    assert [(b.text, b.level) for b in doc.blocks] == [("Title", 1), ("Para one\ncontinues.", 0), ("Sub", 2),
                                                       ("Para two.", 0)]


@pytest.mark.parametrize("name,data,max_bytes,error,code", [
    ("empty.txt", b"", MB, Invalid, "empty_file"),
    ("blank.md", b"  \n\n\t ", MB, Invalid, "empty_file"),
    ("image.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, MB, UnsupportedMedia, "unsupported_type"),
    ("tool.docx", b"MZ\x90\x00" + b"\x00" * 200, MB, UnsupportedMedia, "unsupported_type"),
    ("blob.txt", bytes(range(256)) * 20, MB, UnsupportedMedia, "unsupported_type"),
    ("big.txt", b"word " * (MB // 5 + 10), MB, PayloadTooLarge, "file_too_large"),
    ("locked.pdf", encrypt_pdf(make_pdf(["secret text"])), MB, Invalid, "encrypted_pdf"),
    ("broken.pdf", corrupt_pdf(), MB, Invalid, "corrupt_pdf"),
    ("bomb.docx", docx_zip_bomb(), 20 * MB, Invalid, "zip_bomb"),
    ("corrupt.pdf", random_bytes(), MB, Invalid, "corrupt_pdf"),
    ("corrupt.docx", random_bytes(), MB, Invalid, "corrupt_docx"),
    ("cut.docx", make_docx([("A", ["b"])])[:400], MB, Invalid, "corrupt_docx"),
    ("tool.exe", b"echo this is a script, not a document\n", MB, UnsupportedMedia, "unsupported_type"),
    ("data.xlsx", b"a,b\n1,2\n", MB, UnsupportedMedia, "unsupported_type"),
    ("../../etc/passwd", b"root:x:0:0", MB, Invalid, "invalid_filename"),
    ("reports/q3.txt", b"text", MB, Invalid, "invalid_filename"),
    ("C:\\Users\\me\\q3.txt", b"text", MB, Invalid, "invalid_filename"),
    ("..", b"text", MB, Invalid, "invalid_filename"),
    ("a\x00b.txt", b"text", MB, Invalid, "invalid_filename"),
])
def test_bad_input_is_refused_with_a_reason(name, data, max_bytes, error, code):
    with pytest.raises(error) as info:
        validate(data, name, max_bytes=max_bytes)
    assert info.value.code == code
    assert len(info.value.message) > 10  # a sentence the user can act on


def test_a_damaged_pdf_or_docx_is_named_as_such_not_as_binary():
    for name, what in (("corrupt.pdf", "a readable PDF (damaged, or not really a PDF)"),
                       ("corrupt.docx", "a readable Word document (damaged, or not really a .docx)")):
        with pytest.raises(Invalid) as info:
            validate(random_bytes(), name, max_bytes=MB)
        assert info.value.message == f"{name} is not {what}: export it again"
    with pytest.raises(UnsupportedMedia) as info:  # the same bytes named otherwise: binary, as before
        validate(random_bytes(), "blob.txt", max_bytes=MB)
    assert "binary" in info.value.message


def test_the_extension_refuses_only_unsupported_types():
    with pytest.raises(UnsupportedMedia) as info:
        validate(b"MZ is not here: plain words", "tool.EXE", max_bytes=MB)
    assert info.value.message == ".exe files are not supported; supported types: .txt, .md, .pdf, .docx, .html"
    for name in ("notes.markdown", "page.htm", "README", "minutes 2024.03"):  # no extension: the bytes decide
        assert validate(b"Plain words.", name, max_bytes=MB) == (name, "text")


def test_pdf_without_text_fails_clearly():
    with pytest.raises(Invalid) as info:
        parse(make_pdf([""]), "pdf")
    assert info.value.code == "no_text" and "OCR" in info.value.message


def test_chunks_respect_headings_size_overlap_and_pages():
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60)]
    blocks = [Block("Guide", level=1), Block("Intro", level=2), Block("Short intro paragraph.", page=1),
              Block("Details", level=2), Block(" ".join(sentences[:30]), page=2),
              Block(" ".join(sentences[30:]), page=3)]
    chunks = chunk_blocks(blocks, max_tokens=60, overlap=15)
    assert chunks[0].text == "Short intro paragraph." and chunks[0].section == "Guide > Intro"
    assert chunks[0].page == 1
    detail = chunks[1:]
    assert len(detail) > 5 and all(c.section == "Guide > Details" for c in detail)
    assert all(c.tokens <= 60 and approx_tokens(c.text) <= 60 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for a, b in zip(detail, detail[1:], strict=False):  # consecutive chunks share whole sentences
        assert a.text.split(". ")[-1].rstrip(".") in b.text
    joined = " ".join(c.text for c in detail)
    assert all(s in joined for s in sentences)  # nothing lost
    assert {c.page for c in detail} == {2, 3}
    assert chunk_blocks(blocks, max_tokens=60, overlap=15) == chunks  # deterministic (resume relies on it)


def test_one_huge_sentence_is_split_by_words():
    chunks = chunk_blocks([Block("word " * 500)], max_tokens=50, overlap=0)
    assert len(chunks) == 10 and all(c.tokens <= 50 for c in chunks)
