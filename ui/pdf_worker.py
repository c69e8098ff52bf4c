"""The chat's PDF viewer loads its worker from `/assets/pdf.worker.min-<hash>.mjs`: Chainlit's bundle has that path
built in absolute, so under the /chat mount it is a 404 and every PDF attached in the chat shows "Failed to load
PDF file.". The app serves that one file (and nothing else of /assets) from Chainlit's own build."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

_WORKER = re.compile(r"pdf\.worker(\.min)?-[A-Za-z0-9_-]+\.mjs")


def install_pdf_worker(app: FastAPI, build_dir: str | Path) -> None:
    assets = Path(build_dir) / "assets"

    @app.get("/assets/{filename}", include_in_schema=False)
    def pdf_worker(filename: str) -> FileResponse:
        path = assets / filename
        if not _WORKER.fullmatch(filename) or not path.is_file():
            raise HTTPException(404)
        # A module worker must come as JavaScript; the file is content-hashed, so it can be cached for good.
        return FileResponse(path, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})
