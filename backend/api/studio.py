"""GET /studio: the prompt studio page (same login as the chat: Chainlit's session cookie).

The page is a template plus static files from ui/studio/ (no CDN); everything it shows and changes goes
through the /api/t/{tenant}/prompts routes, so the page holds no extra power of its own.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from backend.api.deps import ServicesDep, _session_claims, client_ip
from backend.auth.principal import PROMPT_EDITOR, Principal
from backend.errors import NotFound
from backend.settings import REPO_ROOT

STUDIO_DIR = Path(REPO_ROOT) / "ui" / "studio"
_STATIC_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*\.(css|js|svg|png|ico)$")
_MEDIA = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml", "png": "image/png",
          "ico": "image/x-icon"}

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(STUDIO_DIR / "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _page(name: str, status: int = 200, **context: object) -> HTMLResponse:
    html = _templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _session_principal(request: Request, services) -> Principal | None:
    claims = _session_claims(request)
    if claims is None:
        return None
    try:
        return services.principal_from_claims(claims, auth="session")
    except ValueError:
        return None


@router.get("/studio", response_class=HTMLResponse)
def studio(request: Request, services: ServicesDep, tenant: str | None = None) -> HTMLResponse:
    principal = _session_principal(request, services)
    if principal is None:
        return _page("login.html", status=401, password_login=services.settings.password_login_enabled)
    editable = [t for t in sorted(principal.tenants) if principal.has_role(t, PROMPT_EDITOR)
                and services.registry.get(t) is not None]
    chosen = tenant or (editable[0] if editable else None)
    if chosen is None or chosen not in editable:
        member = chosen is not None and principal.is_member(chosen)
        reason = "missing_role" if member or chosen is None else "tenant_mismatch"
        services.audit.record("denied", subject=principal.subject, tenant=chosen, route="/studio",
                              ip=client_ip(request), status=403, reason=reason,
                              detail={"page": "studio", "member_of": sorted(principal.tenants)})
        names = [c.name for t in ([chosen] if chosen else sorted(principal.tenants))
                 if (c := services.registry.get(t)) is not None]
        return _page("forbidden.html", status=403, user=principal.name,
                     tenant_name=" and ".join(names) or chosen, member=member or chosen is None,
                     editable=[(t, services.registry.get(t).name) for t in editable])
    cfg = services.registry.get(chosen)
    assert cfg is not None
    return _page("studio.html", user=principal.name, subject=principal.subject, tenant=cfg.id,
                 tenant_name=cfg.name, require_approval=cfg.require_approval,
                 tenants=[(t, services.registry.get(t).name) for t in editable])


@router.get("/studio/static/{name}")
def static(name: str) -> FileResponse:
    m = _STATIC_RE.fullmatch(name)
    path = STUDIO_DIR / "static" / name
    if not m or ".." in name or not path.is_file():
        raise NotFound(f"no studio asset {name!r}")
    return FileResponse(path, media_type=_MEDIA[m.group(1)], headers={"Cache-Control": "no-cache"})
