"""GET /studio: the prompt studio page (same login as the chat: Chainlit's session cookie).

The page is a template plus static files from ui/studio/ (no CDN); everything it shows and changes goes
through the /api/t/{tenant}/prompts routes, so the page holds no extra power of its own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from backend.api.deps import ServicesDep, client_ip
from backend.api.pages import Pages, nav_links, session_principal, sign_in_context
from backend.auth.guard import Denial, allowed, is_operator
from backend.settings import REPO_ROOT

PAGES = Pages(Path(REPO_ROOT) / "ui" / "studio")

router = APIRouter(include_in_schema=False)


@router.get("/studio", response_class=HTMLResponse)
def studio(request: Request, services: ServicesDep, tenant: str | None = None) -> HTMLResponse:
    principal = session_principal(request, services)
    if principal is None:
        return PAGES.page("login.html", status=401, **sign_in_context(request, services))
    editable = [t for t in sorted(principal.tenants) if allowed(principal, t, "prompts:write")
                and services.registry.get(t) is not None]
    chosen = tenant or (editable[0] if editable else None)
    if chosen is None or chosen not in editable:
        member = chosen is not None and allowed(principal, chosen, None)
        misdirected = principal.elsewhere.get(chosen) if chosen else None  # served by another deployment group
        reason = ("served_elsewhere" if misdirected else
                  "missing_role" if member or chosen is None else "tenant_mismatch")
        services.access.record(Denial(reason, misdirected.message() if misdirected else
                                      "you may not edit this department's prompts", 421 if misdirected else 403,
                                      {"page": "studio", "member_of": sorted(principal.tenants)}),
                               subject=principal.subject, tenant=chosen, route="/studio", ip=client_ip(request))
        names = [c.name for t in ([chosen] if chosen else sorted(principal.tenants))
                 if (c := services.registry.get(t)) is not None]
        return PAGES.page("forbidden.html", status=421 if misdirected else 403, user=principal.name,
                     nav=nav_links(principal, services, "studio"),
                     tenant_name=misdirected.tenant_name if misdirected else " and ".join(names) or chosen,
                     member=member or chosen is None,
                     editable=[(t, services.registry.get(t).name) for t in editable],
                     no_department=not principal.tenants and not principal.elsewhere,
                     operator=is_operator(principal), misdirected=misdirected,
                     elsewhere=[p for t, p in sorted(principal.elsewhere.items()) if t != chosen],
                     only_elsewhere=not principal.tenants and bool(principal.elsewhere))
    cfg = services.registry.get(chosen)
    assert cfg is not None
    return PAGES.page("studio.html", user=principal.name, subject=principal.subject, tenant=cfg.id,
                 nav=nav_links(principal, services, "studio"),
                 tenant_name=cfg.name, require_approval=cfg.require_approval,
                 tenants=[(t, services.registry.get(t).name) for t in editable])


@router.get("/studio/static/{name}")
def static(name: str) -> FileResponse:
    return PAGES.static(name)
