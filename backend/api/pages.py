"""Server-rendered pages (studio, admin): Jinja templates + a static folder from ui/<page>/, no CDN,
and the browser session (Chainlit's cookie) as the only way in.

Both pages share one shell from ui/templates (base.html, login.html; each page's own page.html names it) and
ui/static (page.css, favicon.svg), served under each page's own /<page>/static/ route: no route of its own."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse

from backend.auth.guard import allowed, is_operator
from backend.auth.oidc import safe_return_to
from backend.auth.oidc_web import START_PATH
from backend.auth.principal import Principal
from backend.auth.session_cookie import session_token
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
        # The page's own templates, then the shell and partials every page shares (ui/templates).
        folders = [self.folder / "templates", self.folder.parent / "templates"]
        return jinja2.Environment(loader=jinja2.FileSystemLoader(folders),
                                  autoescape=True, trim_blocks=True, lstrip_blocks=True)

    def page(self, name: str, status: int = 200, **context: object) -> HTMLResponse:
        html = self._env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def static(self, name: str) -> FileResponse:
        """A file of the page's static folder, else of the shell's (ui/static); only plain names of the allowed
        types (no traversal)."""
        m = self._static_re.fullmatch(name)
        if m and ".." not in name:
            for folder in (self.folder / "static", self.folder.parent / "static"):
                path = folder / name
                if path.is_file():
                    return FileResponse(path, media_type=_MEDIA[m.group(1)], headers={"Cache-Control": "no-cache"})
        raise NotFound(f"no page asset {name!r}")


def session_principal(request: Request, services: Services) -> Principal | None:
    """Pages are for browsers: the session cookie only (API keys and JWTs use the /api routes)."""
    return services.session_caller(session_token(request.cookies)).principal


def nav_links(principal: Principal, services: Services, current: str) -> list[tuple[str, str, bool]]:
    """The shared header's navigation (ui/templates/base.html): (label, href, is this page) for the surfaces
    `principal` may use: the chat (a member of a served tenant), the studio (edits prompts somewhere), the console
    (administers a tenant), the operations page (a platform operator). The same decisions the pages take."""
    served = [t for t in sorted(principal.tenants) if services.registry.get(t) is not None]
    links = [("chat", "Chat", "/chat", bool(served)),
             ("studio", "Studio", "/studio", any(allowed(principal, t, "prompts:write") for t in served)),
             ("console", "Console", "/console", any(allowed(principal, t, "admin") for t in served)),
             ("admin", "Admin", "/admin", is_operator(principal))]
    return [(label, href, key == current) for key, label, href, shown in links if shown]


def sign_in_context(request: Request, services: Services) -> dict[str, object]:
    """What a page's sign-in form offers: the demo password form and/or the company's IdP, which sends the
    browser back to this page (`next`) rather than into the chat."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    back = safe_return_to(here) or safe_return_to(request.url.path)
    idp = services.oidc_login is not None
    return {"password_login": services.settings.password_login_enabled, "idp_login": idp,
            "idp_url": START_PATH + (f"?{urlencode({'next': back})}" if back else "")}
