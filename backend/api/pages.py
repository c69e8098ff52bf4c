"""Server-rendered pages (studio, admin): Jinja templates + a static folder from ui/<page>/, no CDN,
and the browser session (Chainlit's cookie) as the only way in."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import jinja2
from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse

from backend.api.deps import _session_claims
from backend.auth.principal import Principal
from backend.container import Services
from backend.errors import NotFound

_MEDIA = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml", "png": "image/png",
          "ico": "image/x-icon"}


class Pages:
    def __init__(self, folder: Path, *, static_types: tuple[str, ...] = tuple(_MEDIA)) -> None:
        self.folder = folder
        self._static_re = re.compile(r"^[a-z0-9][a-z0-9_.-]*\.(" + "|".join(static_types) + ")$")

    @cached_property
    def _env(self) -> jinja2.Environment:
        return jinja2.Environment(loader=jinja2.FileSystemLoader(self.folder / "templates"),
                                  autoescape=True, trim_blocks=True, lstrip_blocks=True)

    def page(self, name: str, status: int = 200, **context: object) -> HTMLResponse:
        html = self._env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def static(self, name: str) -> FileResponse:
        """A file of the static folder; only plain names of the allowed types (no traversal)."""
        m = self._static_re.fullmatch(name)
        path = self.folder / "static" / name
        if not m or ".." in name or not path.is_file():
            raise NotFound(f"no page asset {name!r}")
        return FileResponse(path, media_type=_MEDIA[m.group(1)], headers={"Cache-Control": "no-cache"})


def session_principal(request: Request, services: Services) -> Principal | None:
    """Pages are for browsers: the session cookie only (API keys and JWTs use the /api routes)."""
    claims = _session_claims(request)
    if claims is None:
        return None
    try:
        return services.principal_from_claims(claims, auth="session")
    except ValueError:
        return None
