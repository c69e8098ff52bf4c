"""A file whose bytes are not the type its name says is refused, through the API and `atrium ingest`, with a reason
naming what it is and how to fix it; nothing is stored for it. (A text file named .docx used to be indexed.)"""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from tests.conftest import REPO
from tests.knowledge.files import make_docx, make_pdf

TEXT = b"Refunds are allowed within 30 days of purchase.\n"


def _upload(client, cookies, name: str, data: bytes):
    return client.post("/api/t/sales/documents", files=[("files", (name, data, "application/octet-stream"))],
                       cookies=cookies)


def test_content_that_is_not_what_the_extension_says_is_refused(api_client, login_as, api_services):
    carol = login_as("carol")  # sales tenant admin
    pdf, docx = make_pdf(["Refunds are allowed within 30 days."]), make_docx([("Refunds", ["Within 30 days."])])
    for name, data, message in (
        ("report.docx", TEXT, "report.docx is not a Word document (it is plain text): rename it to .txt"),
        ("report.pdf", TEXT, "report.pdf is not a PDF (it is plain text): rename it to .txt"),
        ("scan.docx", pdf, "scan.docx is not a Word document (it is a PDF): rename it to .pdf"),
        ("notes.txt", pdf, "notes.txt is not text (it is a PDF): rename it to .pdf"),
        ("notes.md", docx, "notes.md is not text (it is a Word document): rename it to .docx"),
        ("page.html", docx, "page.html is not text (it is a Word document): rename it to .docx"),
        ("minutes.pdf", docx, "minutes.pdf is not a PDF (it is a Word document): rename it to .docx"),
    ):
        r = _upload(api_client, carol, name, data)
        assert (r.status_code, r.json()["error"]) == (422, "type_mismatch"), (name, r.text)
        assert r.json()["detail"] == message
    # A NUL byte deep inside a "text" file makes it binary, not text with a hole in it.
    r = _upload(api_client, carol, "log.txt", TEXT * 400 + b"\x00" + TEXT)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_type", r.text
    with api_services.db.session() as session:
        assert session.execute(sa.text("select count(*) from kb_document")).scalar() == 0
    # Each file under its own name is accepted; no extension: the bytes decide.
    for name, data in (("report.txt", TEXT), ("scan.pdf", pdf), ("notes.docx", docx), ("README", TEXT)):
        r = _upload(api_client, carol, name, data)
        assert r.status_code == 202, (name, r.text)


def test_cli_ingest_refuses_a_mismatched_file_by_name(data_dir, tmp_path):
    (tmp_path / "report.docx").write_bytes(TEXT)
    env = {**os.environ, "ATRIUM_DATA_DIR": str(data_dir), "ATRIUM_INGEST_WORKER": "false"}
    done = subprocess.run([sys.executable, "-m", "backend.cli", "ingest", "--tenant", "sales",
                           str(tmp_path / "report.docx")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "report.docx is not a Word document (it is plain text): rename it to .txt" in done.stderr
    engine = sa.create_engine(f"sqlite:///{data_dir / 'atrium.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from kb_document")).scalar() == 0
    engine.dispose()
