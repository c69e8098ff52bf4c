"""GET /admin: the platform operators' overview page (same login as the chat: Chainlit's session cookie).

Read-only and server-rendered from ui/admin/ (no CDN; the only scripts are the sign-in form, which stays on
this page, and the sign-out button). It shows
what the /api/admin routes, /readyz and the tenant usage reports already expose, through the same data
functions, so the page holds no extra power of its own. Every view is itself an `admin_access` audit event,
every refusal a `denied` one (backend/governance/operators.py records both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from backend.api.admin_charts import admin_charts
from backend.api.deps import ServicesDep, client_ip
from backend.api.pages import Pages, nav_links, session_principal, sign_in_context
from backend.container import Services
from backend.settings import REPO_ROOT

PAGES = Pages(Path(REPO_ROOT) / "ui" / "admin", static_types=("css", "svg"))
ROUTE = "/admin"
DENIALS_SHOWN = 50
# The operator's own visits before signing in are denials like any other (audited: the tenancy invariant records
# every refusal) but not a security signal: listed apart, so the real ones stand out.
SIGN_IN_PAGES = (ROUTE,)

router = APIRouter(include_in_schema=False)


def _models(services: Services) -> dict:
    live = services.llm.live
    return {"live": set(live.live), "tiers": [(tier, models) for tier, models in live.live.items()],
            "excluded": sorted(live.excluded.items()), "retiring": sorted(live.retiring.items())}


@router.get(ROUTE, response_class=HTMLResponse)
def admin_page(request: Request, services: ServicesDep, days: str | None = None,
               start: Annotated[str | None, Query(alias="from")] = None,
               end: Annotated[str | None, Query(alias="to")] = None) -> HTMLResponse:
    """`days` (the last n days) or `from`/`to` (YYYY-MM-DD, UTC): the charts' range (default: 30 days); a bad one
    is a 400 page that says what to fix."""
    principal = session_principal(request, services)
    # Who may see it (the view and every refusal are logged there): the operators' console (governance).
    refusal = services.operators.admit_page(principal, page="admin", route=ROUTE, ip=client_ip(request))
    if refusal == "not_authenticated" or principal is None:
        return PAGES.page("login.html", status=401, **sign_in_context(request, services))
    if refusal is not None:
        return PAGES.page("forbidden.html", status=403, user=principal.name,
                          nav=nav_links(principal, services, "admin"),
                          tenants=[c.name for t in sorted(principal.tenants) if (c := services.registry.get(t))])
    overview = services.operators.overview(sign_in_pages=SIGN_IN_PAGES, denials_shown=DENIALS_SHOWN)
    readiness = services.readiness()
    chart_context = admin_charts(services, days=days, start=start, end=end, sign_in_pages=SIGN_IN_PAGES)
    return PAGES.page("admin.html", status=400 if chart_context["error"] else 200, ranges=chart_context,
                      user=principal.name, nav=nav_links(principal, services, "admin"),
                      tenants=overview.tenants, models=_models(services),
                      readiness=readiness, ready=all(v == "ok" for v in readiness.values()),
                      prompt_problems=sorted(services.prompt_problems().items()),
                      denials=overview.denials, denials_shown=DENIALS_SHOWN,
                      sign_in_prompts=overview.sign_in_prompts, sign_in_pages=SIGN_IN_PAGES,
                      suspicious=overview.suspicious, suspicious_capped=overview.suspicious_capped)


@router.get(f"{ROUTE}/static/{{name}}")
def static(name: str) -> FileResponse:
    return PAGES.static(name)
