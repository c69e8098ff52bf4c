"""`atrium ingest` (backend/knowledge/cli.py) on real folders and files, with the real embedder and store:
documents named by their path in the folder given, no file silently replacing another, no link followed out
of the folder, every file left out named with why, and refusals as one `error:` line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.knowledge.cli import ingest_paths
from tests.knowledge.conftest import admin_of
from tests.knowledge.files import random_bytes

EMEA = b"# Regional notes\n\nThe EMEA desk runs Project HERON-4 out of Dublin.\n"
APAC = b"# Regional notes\n\nThe APAC desk runs Project IBIS-2 out of Singapore.\n"


def _docs(services, tenant: str = "sales") -> dict[str, dict]:
    return {d["filename"]: d for d in services.knowledge.list_documents(admin_of(tenant), tenant)}


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


async def test_same_file_names_in_two_folders_are_two_documents(services, tmp_path, capsys):
    folder = _tree(tmp_path / "regions", {"emea/notes.md": EMEA, "apac/notes.md": APAC})
    assert ingest_paths(services, tenant="sales", paths=[str(folder)]) == 0
    out = capsys.readouterr()
    assert "sales: 2 file(s): 2 ready" in out.out and "error" not in out.err
    docs = _docs(services)
    assert sorted(docs) == ["apac/notes.md", "emea/notes.md"] and all(d["status"] == "ready" for d in docs.values())
    assert {d["title"] for d in docs.values()} == {"Regional notes"}  # cited by the document's own title
    hits = await services.knowledge.search(admin_of("sales"), "sales", "Which project does the APAC desk run?")
    assert "IBIS-2" in hits[0].text

    # Ingesting the folder again with one file changed replaces that document only (a new version, on purpose).
    (folder / "emea" / "notes.md").write_bytes(EMEA.replace(b"HERON-4", b"HERON-5"))
    assert ingest_paths(services, tenant="sales", paths=[str(folder)]) == 0
    assert "2 file(s): 2 ready (1 unchanged)" in capsys.readouterr().out
    again = _docs(services)
    assert sorted(again) == ["apac/notes.md", "emea/notes.md"]
    assert again["apac/notes.md"]["id"] == docs["apac/notes.md"]["id"]
    assert again["emea/notes.md"]["id"] != docs["emea/notes.md"]["id"]
    assert services.knowledge.store.count("sales", docs["emea/notes.md"]["id"]) == 0


def test_the_same_name_twice_with_other_content_is_refused_naming_both(services, tmp_path, capsys):
    folder = _tree(tmp_path / "regions", {"emea/notes.md": EMEA, "apac/notes.md": APAC})
    emea, apac = folder / "emea" / "notes.md", folder / "apac" / "notes.md"
    assert ingest_paths(services, tenant="sales", paths=[str(emea), str(apac)]) == 1
    out = capsys.readouterr()
    assert f"error: {apac} was not ingested: it is named 'notes.md' like {emea}, with other content" in out.err
    assert "sales: 2 file(s): 1 ready, 1 failed" in out.out and "deleted while ingesting" not in out.err
    (doc,) = _docs(services).values()
    assert doc["filename"] == "notes.md" and doc["status"] == "ready"
    assert services.knowledge.store.count("sales") == doc["chunks"]


def test_links_out_of_the_folder_hidden_and_unsupported_files_are_skipped_and_named(services, tmp_path, capsys):
    outside = _tree(tmp_path / "private", {"secret.txt": b"The vault code is 4711.\n"})
    folder = _tree(tmp_path / "docs", {"guide.md": EMEA, "tool.exe": b"echo hi\n", ".hidden/h.md": APAC,
                                       "sub/.env": b"TOKEN=x\n"})
    os.symlink(outside / "secret.txt", folder / "secret.txt")
    os.symlink(outside, folder / "private")
    os.symlink(folder / "guide.md", folder / "same-guide.md")  # a link inside the folder is followed
    assert ingest_paths(services, tenant="sales", paths=[str(folder)]) == 0
    out = capsys.readouterr()
    skipped = [line for line in out.out.splitlines() if line.startswith("skipped")]
    assert skipped == ["skipped 5 file(s): private/, secret.txt (outside the folder); tool.exe (unsupported type); "
                       ".hidden/h.md, sub/.env (hidden)"]
    assert sorted(_docs(services)) == ["guide.md"]  # same-guide.md has the same content: the same document
    assert services.knowledge.store.count("sales") == _docs(services)["guide.md"]["chunks"]


def test_refusals_are_error_lines_not_tracebacks(services, tmp_path, capsys):
    files = _tree(tmp_path, {"file.md": EMEA, "tool.exe": b"echo this is not a document\n",
                             "corrupt.pdf": random_bytes(), "corrupt.docx": random_bytes()})
    assert ingest_paths(services, tenant="sales", paths=[str(files / "file.md")], kb="../x") == 2
    assert capsys.readouterr().err.strip() == ("error: knowledge base name '../x' must be up to 63 ASCII letters, "
                                               "digits, '-' or '_', starting with a letter or digit")
    names = ["tool.exe", "corrupt.pdf", "corrupt.docx"]
    assert ingest_paths(services, tenant="sales", paths=[str(files / n) for n in names]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {files / 'tool.exe'}: .exe files are not supported; supported types: .txt, .md, .pdf, .docx, .html",
        f"error: {files / 'corrupt.pdf'}: corrupt.pdf is not a readable PDF (damaged, or not really a PDF): "
        "export it again",
        f"error: {files / 'corrupt.docx'}: corrupt.docx is not a readable Word document (damaged, or not really a "
        ".docx): export it again"]
    assert _docs(services) == {}


@pytest.mark.parametrize("kb", ["Bad KB", "../x"])
def test_a_bad_kb_name_is_quoted_as_given(services, tmp_path, capsys, kb):
    assert ingest_paths(services, tenant="sales", paths=[str(_tree(tmp_path, {"a.md": EMEA}))], kb=kb) == 2
    assert f"knowledge base name {kb!r} must be" in capsys.readouterr().err
