"""GET /admin: the platform operators' overview page (same login as the chat: Chainlit's session cookie).

Read-only and server-rendered from ui/admin/ (no CDN; the only scripts are the sign-in form, which stays on
this page, and the sign-out button). It shows
what the /api/admin routes, /readyz and the tenant usage reports already expose, through the same data
functions, so the page holds no extra power of its own. Every view is itself an `admin_access` audit event,
every refusal a `denied` one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from backend.api.admin import AuditEventPublic
from backend.api.deps import ServicesDep, client_ip
from backend.api.pages import Pages, session_principal, sign_in_context
from backend.auth.guard import is_operator
from backend.auth.principal import Principal
from backend.container import Services
from backend.db.repositories.audit import list_denials, list_events
from backend.settings import REPO_ROOT

PAGES = Pages(Path(REPO_ROOT) / "ui" / "admin", static_types=("css", "svg"))
ROUTE = "/admin"
DENIALS_SHOWN = 50
# The operator's own visits before signing in are denials like any other (audited: the tenancy invariant records
# every refusal) but not a security signal: listed apart, so the real ones stand out.
SIGN_IN_PAGES = (ROUTE,)
# "All" suspicious_access events, with a ceiling so a flood cannot make the page unusable; the page says
# when it is reached (the full list stays available at /api/admin/audit?kind=suspicious_access).
SUSPICIOUS_CAP = 1000

router = APIRouter(include_in_schema=False)


def _deny(request: Request, services: Services, principal: Principal | None, status: int, reason: str) -> None:
    services.audit.record("denied", subject=principal.subject if principal else None, route=ROUTE,
                          ip=client_ip(request), status=status, reason=reason,
                          detail={"page": "admin", "required": "platform_admin",
                                  "member_of": sorted(principal.tenants) if principal else []})


def _tenants(services: Services) -> list[dict]:
    rows = []
    for t in services.registry.all():
        usage = services.usage.report(tenant=t.id, start=None, end=None, group_by="assistant")["totals"] \
            if services.usage is not None else None
        budget = t.quotas.monthly_budget_usd
        rows.append({"id": t.id, "name": t.name, "assistants": [(a.name, a.title) for a in t.assistants],
                     "policy": t.model_policy, "quotas": t.quotas, "require_approval": t.require_approval,
                     "usage": usage,
                     "budget_pct": round(100 * usage["cost_usd"] / budget) if usage and budget else None})
    return rows


def _models(services: Services) -> dict:
    live = services.llm.live
    return {"live": set(live.live), "tiers": [(tier, models) for tier, models in live.live.items()],
            "excluded": sorted(live.excluded.items()), "retiring": sorted(live.retiring.items())}


@router.get(ROUTE, response_class=HTMLResponse)
def admin_page(request: Request, services: ServicesDep) -> HTMLResponse:
    principal = session_principal(request, services)
    if principal is None:
        # Audited like the API's not_authenticated: probing the operator page is worth a row too.
        _deny(request, services, None, 401, "not_authenticated")
        return PAGES.page("login.html", status=401, **sign_in_context(request, services))
    if not is_operator(principal):
        _deny(request, services, principal, 403, "missing_role")
        return PAGES.page("forbidden.html", status=403, user=principal.name,
                     tenants=[c.name for t in sorted(principal.tenants) if (c := services.registry.get(t))])
    # A cross-tenant read is itself an audit event (as for /api/admin/*), recorded before anything is read.
    services.audit.record("admin_access", subject=principal.subject, route=ROUTE, ip=client_ip(request),
                          status=200, detail={"page": "admin"})
    with services.db.session() as session:
        denials = list_denials(session=session, sign_in_pages=SIGN_IN_PAGES, sign_in_prompts=False,
                               limit=DENIALS_SHOWN)
        sign_in_prompts = list_denials(session=session, sign_in_pages=SIGN_IN_PAGES, sign_in_prompts=True,
                                       limit=DENIALS_SHOWN)
        suspicious = list_events(session=session, kind="suspicious_access", limit=SUSPICIOUS_CAP)
    readiness = services.readiness()
    return PAGES.page("admin.html", user=principal.name, tenants=_tenants(services), models=_models(services),
                 readiness=readiness, ready=all(v == "ok" for v in readiness.values()),
                 prompt_problems=sorted(services.prompt_problems().items()),
                 denials=[AuditEventPublic.of(e) for e in denials], denials_shown=DENIALS_SHOWN,
                 sign_in_prompts=[AuditEventPublic.of(e) for e in sign_in_prompts], sign_in_pages=SIGN_IN_PAGES,
                 suspicious=[AuditEventPublic.of(e) for e in suspicious],
                 suspicious_capped=len(suspicious) >= SUSPICIOUS_CAP)


@router.get(f"{ROUTE}/static/{{name}}")
def static(name: str) -> FileResponse:
    return PAGES.static(name)
