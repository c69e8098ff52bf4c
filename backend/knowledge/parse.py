"""Turn uploaded bytes into text blocks (headings, paragraphs, page numbers), after checking them.

The type is sniffed from the bytes, never taken from the extension, and the two must agree: a name that says
something unsupported (tool.exe) is refused, so is one whose bytes are another type than it says (a text file
named .docx, a PDF named .txt: renaming it is the fix), and a damaged .pdf/.docx is named as such. Everything a user
can get wrong raises a backend.errors class with a message they can act on (empty, too large, unsupported,
encrypted or corrupt PDF or .docx, a .docx that unpacks to far more than it weighs, a file name with path
components).
HTML and .docx structure (lists, tables) is read in html.py and word.py; PDF and text here.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import PurePosixPath, PureWindowsPath

from backend.errors import Invalid, PayloadTooLarge, UnsupportedMedia
from backend.knowledge.blocks import Block, ParsedDocument  # noqa: F401  (re-exported: parse's output types)
from backend.knowledge.html import parse_html
from backend.knowledge.pieces import LIST_ITEM, is_list
from backend.knowledge.word import parse_docx

SUPPORTED = ".txt, .md, .pdf, .docx, .html"
# What a name may end with (the spellings .markdown and .htm included); `atrium ingest` of a folder takes these.
EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm"})
# A .docx is a zip; refuse archives that expand far beyond their size (zip bombs).
DOCX_MAX_RATIO = 100
DOCX_MAX_ENTRIES = 2000
_MAGIC = [  # (prefix, what it is) for friendly "unsupported" messages
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"MZ", "a Windows executable"), (b"\x7fELF", "a Linux executable"), (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"\xd0\xcf\x11\xe0", "a legacy Office file"),
]


def clean_filename(name: str | None) -> str:
    """The file name as given, refused when it carries directories or control characters."""
    if not name or not name.strip():
        raise Invalid("the file has no name", code="invalid_filename")
    if "\x00" in name or any(ord(c) < 32 for c in name):
        raise Invalid(f"the file name {name[:80]!r} contains control characters", code="invalid_filename")
    if ("/" in name or "\\" in name or PurePosixPath(name).name != name or PureWindowsPath(name).name != name
            or name.strip() in (".", "..")):
        raise Invalid(f"the file name {name[:120]!r} contains path components; send the bare file name "
                      "(e.g. 'handbook.pdf')", code="invalid_filename")
    if len(name) > 255:
        raise Invalid("the file name is longer than 255 characters", code="invalid_filename")
    return name.strip()


def clean_folder(folder: str) -> str:
    """A relative folder path ("apac/2025"), each part checked like a file name (no "..", no control characters)."""
    parts = folder.strip("/").split("/")
    for part in parts:
        clean_filename(part)
    if len(folder) > 700:
        raise Invalid(f"the folder path {folder[:80]!r}… is longer than 700 characters", code="invalid_filename")
    return "/".join(p.strip() for p in parts)


def extension(name: str) -> str:
    """The name's extension, lower-cased ('' for none). "minutes 2024.03" has none: a number is not a type."""
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,10}", suffix) and re.search(r"[a-z]", suffix) else ""


def check_extension(name: str) -> None:
    """Refuse a name that says it is an unsupported type (tool.exe, data.xlsx), whatever its bytes look like:
    a file is never ingested as text when its name says it is something else. No extension: the bytes decide."""
    ext = extension(name)
    if ext and ext not in EXTENSIONS:
        raise UnsupportedMedia(f"{ext} files are not supported; supported types: {SUPPORTED}",
                               code="unsupported_type")


# What each sniffed type may be named (no extension: the bytes decide), how to say it, and the name it should have.
_TEXT_NAMES = (".txt", ".md", ".markdown", ".html", ".htm")
_NAMES = {"pdf": (".pdf",), "docx": (".docx",), "text": _TEXT_NAMES, "markdown": _TEXT_NAMES, "html": _TEXT_NAMES}
_IS = {"pdf": ("a PDF", ".pdf"), "docx": ("a Word document", ".docx"), "text": ("plain text", ".txt"),
       "markdown": ("Markdown text", ".md"), "html": ("an HTML page", ".html")}


def check_content(name: str, kind: str) -> None:
    """Refuse a file whose bytes are not the type its extension says (report.docx that is plain text)."""
    ext = extension(name)
    if not ext or ext in _NAMES[kind]:
        return
    claimed = "a PDF" if ext == ".pdf" else "a Word document" if ext == ".docx" else "text"
    what, rename = _IS[kind]
    raise Invalid(f"{name[:120]} is not {claimed} (it is {what}): rename it to {rename}", code="type_mismatch")


def _damaged(name: str) -> Invalid | None:
    """For a file named .pdf/.docx whose bytes are not one: it was damaged (or renamed), so say that, not
    "binary"; None for other names."""
    ext = extension(name)
    if ext == ".pdf":
        return Invalid(f"{name[:120]} is not a readable PDF (damaged, or not really a PDF): export it again",
                       code="corrupt_pdf")
    if ext == ".docx":
        return Invalid(f"{name[:120]} is not a readable Word document (damaged, or not really a .docx): "
                       "export it again", code="corrupt_docx")
    return None


def sniff(data: bytes, name: str = "") -> str:
    """The content type from the bytes; `name` (the file name) only words the refusal of a damaged file."""
    head = data[:2048]
    if head.startswith(b"%PDF-") or b"%PDF-" in data[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if "word/document.xml" in zf.namelist():
                    return "docx"
        except zipfile.BadZipFile as exc:
            raise _damaged(name) or Invalid(f"the file looks like a zip/.docx but is corrupt: {exc}",
                                            code="corrupt_docx") from exc
        raise _damaged(name) or UnsupportedMedia(f"this is a zip archive, not a Word document; supported types: "
                                                 f"{SUPPORTED}", code="unsupported_type")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise UnsupportedMedia(f"this file is {what}; supported types: {SUPPORTED}", code="unsupported_type")
    text = _decode(data)
    if text is None:
        raise _damaged(name) or UnsupportedMedia(f"this file is binary, not text or a supported document; "
                                                 f"supported types: {SUPPORTED}", code="unsupported_type")
    probe = text[:2048].lstrip().lower()
    if probe.startswith(("<!doctype html", "<html")) or re.search(r"<(body|head|p|div|h[1-6])[\s>]", probe[:600]):
        return "html"
    return "markdown" if re.search(r"(?m)^#{1,6} \S", text[:20000]) else "text"


def _decode(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    if b"\x00" in data:  # text has no NUL: a binary file, however much of it looks like text
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    sample = text[:8192]
    controls = sum(1 for c in sample if ord(c) < 32 and c not in "\n\r\t\f")
    return None if sample and controls / len(sample) > 0.02 else text


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"


def validate(data: bytes, filename: str | None, *, max_bytes: int) -> tuple[str, str]:
    """Cheap checks done while the uploader waits: -> (file name, content type). Raises 4xx errors."""
    name = clean_filename(filename)
    if len(data) > max_bytes:
        # The upload route stops reading one byte past the limit, so the real size is unknown here.
        raise PayloadTooLarge(f"{name} is larger than the {_size(max_bytes)} limit (ATRIUM_MAX_UPLOAD_MB)",
                              code="file_too_large")
    check_extension(name)
    if not data.strip():
        raise Invalid(f"{name} is empty", code="empty_file")
    kind = sniff(data, name)
    check_content(name, kind)
    if kind == "pdf":
        _open_pdf(data)
    elif kind == "docx":
        _check_zip(data, max_bytes=max_bytes)
    return name, kind


def parse(data: bytes, content_type: str) -> ParsedDocument:
    if content_type == "pdf":
        doc = _parse_pdf(data)
    elif content_type == "docx":
        doc = parse_docx(data)
    elif content_type == "html":
        doc = parse_html(_decode(data) or "")
    else:
        doc = _parse_text(_decode(data) or "", markdown=content_type == "markdown")
    doc.blocks = [b for b in doc.blocks if b.text.strip()]
    if not any(b.level == 0 for b in doc.blocks):
        hint = " (a scanned PDF? run OCR on it first)" if content_type == "pdf" else ""
        raise Invalid(f"no text could be extracted{hint}", code="no_text")
    return doc


# -- PDF -------------------------------------------------------------------------------------------------------


def _open_pdf(data: bytes):
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it logs every repairable glitch
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Owner-password-only PDFs open with an empty user password; real encryption does not.
            try:
                ok = reader.decrypt("")
            except Exception:
                ok = 0
            if not ok:
                raise Invalid("the PDF is password-protected; remove the password and upload it again",
                              code="encrypted_pdf")
        _ = len(reader.pages)
        return reader
    except Invalid:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, IndexError, OSError, AssertionError) as exc:
        raise Invalid(f"the PDF is damaged and cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
                      code="corrupt_pdf") from exc
    except Exception as exc:  # pypdf raises a zoo of errors on broken files
        raise Invalid(f"the PDF cannot be read ({type(exc).__name__})", code="corrupt_pdf") from exc


def _parse_pdf(data: bytes) -> ParsedDocument:
    reader = _open_pdf(data)
    doc = ParsedDocument(content_type="pdf", pages=len(reader.pages))
    try:
        meta_title = (reader.metadata or {}).get("/Title")
        doc.title = str(meta_title).strip() or None if meta_title else None
    except Exception:
        doc.title = None
    for number, page in enumerate(reader.pages, 1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:
            raise Invalid(f"page {number} of the PDF cannot be read ({type(exc).__name__})",
                          code="corrupt_pdf") from exc
        for para in re.split(r"\n\s*\n", text):
            para = _pdf_lines(para)
            if para:
                doc.blocks.append(Block(text=para, page=number))
    return doc


def _pdf_lines(para: str) -> str:
    """Unwrap a paragraph's lines, except where a line starts a list item: the items stay one per line, so the
    chunker can keep each with its text (and "1." is not cut from "Stage 0" as if it ended a sentence)."""
    lines = [line.strip() for line in para.split("\n") if line.strip()]
    out: list[str] = []
    for line in lines:
        if out and not LIST_ITEM.match(line):
            out[-1] += " " + line
        else:
            out.append(line)
    return "\n".join(out)


# -- DOCX ------------------------------------------------------------------------------------------------------


def _check_zip(data: bytes, *, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise Invalid(f"the .docx is corrupt: {exc}", code="corrupt_docx") from exc
    total = sum(i.file_size for i in infos)
    limit = max(max_bytes * 5, 50_000_000)
    if len(infos) > DOCX_MAX_ENTRIES or total > limit or total > DOCX_MAX_RATIO * max(len(data), 1) + 10_000_000:
        raise Invalid(f"the .docx expands to {total / 1e6:.0f} MB from {len(data) / 1e6:.1f} MB "
                      f"({len(infos)} parts): refused as a possible zip bomb", code="zip_bomb")


# -- text / markdown ---------------------------------------------------------------------------------------------


def _parse_text(text: str, *, markdown: bool) -> ParsedDocument:
    doc = ParsedDocument(content_type="markdown" if markdown else "text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    in_fence = False
    buf: list[str] = []

    def flush() -> None:
        if not buf:
            return
        raw = "\n".join(buf).rstrip()
        prev = doc.blocks[-1] if doc.blocks else None
        # A loose list (items apart by blank lines) and an item's indented continuation paragraphs stay one
        # block with the list, so its items are kept together and each item with its continuation.
        if (markdown and prev is not None and prev.level == 0 and is_list(prev.text)
                and (LIST_ITEM.match(raw) or raw[:1] in (" ", "\t"))):
            prev.text += "\n\n" + raw
        else:
            doc.blocks.append(Block(text=raw.strip()))
        buf.clear()

    for line in text.split("\n"):
        if markdown and line.lstrip().startswith("```"):
            in_fence = not in_fence
        heading = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line) if markdown and not in_fence else None
        if heading:
            flush()
            level = len(heading.group(1))
            doc.blocks.append(Block(text=heading.group(2).strip(), level=level))
            if level == 1 and doc.title is None:
                doc.title = heading.group(2).strip()
        elif not line.strip() and not in_fence:
            flush()
        else:
            buf.append(line)
    flush()
    return doc
