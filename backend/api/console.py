"""GET /console: the tenant console (same login as the chat: Chainlit's session cookie), for a tenant's admins.

Server-rendered from ui/console/ (no CDN; charts are SVG drawn here: ui/charts.py). A person admin of several
tenants picks one at /console; each tab is /console/{tenant}/{knowledge|keys|usage|audit}. Who may see a tab is the
one access decision (guard.decide with the `admin` permission, as the REST routes' TenantAdmin dependency asks),
and every refusal is an audited `denied` event. What a tab shows comes from the same service functions as the
REST API, and what it changes (upload, delete, re-index, key create and revoke) its script sends to the REST routes
themselves, so the console holds no rule or power of its own; those services audit every change.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from backend.api import console_tabs as tabs
from backend.api.deps import ServicesDep, client_ip
from backend.api.pages import Pages, nav_links, session_principal, sign_in_context
from backend.api.params import IsoDate
from backend.auth.guard import Denial, allowed, decide
from backend.auth.principal import Principal
from backend.container import Services
from backend.settings import REPO_ROOT

PAGES = Pages(Path(REPO_ROOT) / "ui" / "console")
ROUTE = "/console"
TABS = (("knowledge", "Knowledge"), ("keys", "Keys"), ("usage", "Usage"), ("audit", "Audit"))

router = APIRouter(include_in_schema=False)


def admin_tenants(principal: Principal, services: Services) -> list[str]:
    """The served tenants `principal` administers (what the picker offers)."""
    return [t for t in sorted(principal.tenants) if services.registry.get(t) is not None
            and allowed(principal, t, "admin")]


def _refuse(request: Request, services: Services, principal: Principal, tenant: str | None,
            denial: Denial) -> HTMLResponse:
    services.access.record(denial, subject=principal.subject, tenant=tenant, route=request.url.path,
                           ip=client_ip(request))
    cfg = services.registry.get(tenant) if tenant else None
    return PAGES.page("forbidden.html", status=denial.status, user=principal.name,
                      nav=nav_links(principal, services, "console"), tenant=tenant,
                      tenant_name=cfg.name if cfg else tenant, message=denial.message,
                      administered=[(t, services.registry.get(t).name) for t in admin_tenants(principal, services)])


def _admit(request: Request, services: Services, tenant: str | None) -> Principal | HTMLResponse:
    """The signed-in tenant admin of `tenant` (None: of any tenant), else the page that says why not (audited)."""
    principal = session_principal(request, services)
    if principal is None:
        services.access.record(Denial("not_authenticated", "sign in to use the console", 401,
                                      {"page": "console"}), subject=None, tenant=tenant, route=request.url.path,
                               ip=client_ip(request))
        return PAGES.page("login.html", status=401, **sign_in_context(request, services))
    if tenant is None:
        if admin_tenants(principal, services):
            return principal
        return _refuse(request, services, principal, None, Denial(
            "missing_role", "you administer no department", 403,
            {"page": "console", "required": "admin", "role": "tenant_admin"}))
    denial = decide(principal, tenant, "admin", configured=services.registry.get(tenant) is not None)
    if denial is not None:
        return _refuse(request, services, principal, tenant, denial)
    return principal


def _page(request: Request, services: ServicesDep, principal: Principal, tenant: str, tab: str,
          **context: object) -> HTMLResponse:
    cfg = services.registry.get(tenant)
    assert cfg is not None  # decide() refused an unconfigured tenant
    return PAGES.page(f"{tab}.html", user=principal.name, nav=nav_links(principal, services, "console"),
                      tenant=tenant, tenant_name=cfg.name, tab=tab, tabs=TABS,
                      tenants=[(t, services.registry.get(t).name) for t in admin_tenants(principal, services)],
                      **context)


@router.get(ROUTE, response_class=HTMLResponse)
def picker(request: Request, services: ServicesDep) -> Response:
    admitted = _admit(request, services, None)
    if isinstance(admitted, HTMLResponse):
        return admitted
    tenants = admin_tenants(admitted, services)
    if len(tenants) == 1:
        return RedirectResponse(f"{ROUTE}/{tenants[0]}/knowledge", status_code=303)
    return PAGES.page("picker.html", user=admitted.name, nav=nav_links(admitted, services, "console"),
                      tenants=[(t, services.registry.get(t).name) for t in tenants])


@router.get(f"{ROUTE}/{{tenant}}", response_class=HTMLResponse)
def tenant_home(request: Request, services: ServicesDep, tenant: str) -> Response:
    admitted = _admit(request, services, tenant)
    if isinstance(admitted, HTMLResponse):
        return admitted
    return RedirectResponse(f"{ROUTE}/{tenant}/knowledge", status_code=303)


@router.get(f"{ROUTE}/{{tenant}}/knowledge", response_class=HTMLResponse)
def knowledge(request: Request, services: ServicesDep, tenant: str) -> Response:
    admitted = _admit(request, services, tenant)
    if isinstance(admitted, HTMLResponse):
        return admitted
    return _page(request, services, admitted, tenant, "knowledge", **tabs.knowledge(services, admitted, tenant))


@router.get(f"{ROUTE}/{{tenant}}/keys", response_class=HTMLResponse)
def keys(request: Request, services: ServicesDep, tenant: str) -> Response:
    admitted = _admit(request, services, tenant)
    if isinstance(admitted, HTMLResponse):
        return admitted
    return _page(request, services, admitted, tenant, "keys", **tabs.keys(services, tenant))


@router.get(f"{ROUTE}/{{tenant}}/usage", response_class=HTMLResponse)
def usage(request: Request, services: ServicesDep, tenant: str,
          start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
          end: Annotated[str | None, Query(alias="to", max_length=40)] = None) -> Response:
    admitted = _admit(request, services, tenant)
    if isinstance(admitted, HTMLResponse):
        return admitted
    return _page(request, services, admitted, tenant, "usage", **tabs.usage(services, tenant, start, end))


@router.get(f"{ROUTE}/{{tenant}}/usage.csv")
def usage_csv(request: Request, services: ServicesDep, tenant: str,
              start: Annotated[IsoDate | None, Query(alias="from")] = None,
              end: Annotated[IsoDate | None, Query(alias="to")] = None,
              group_by: Literal["day", "model", "user", "assistant"] = "day") -> Response:
    admitted = _admit(request, services, tenant)
    if isinstance(admitted, HTMLResponse):
        return admitted
    assert services.usage is not None
    report = services.usage.report(tenant=tenant, start=start, end=end, group_by=group_by)
    out = io.StringIO()
    columns = ["requests", "internal_calls", "cached", "prompt_tokens", "completion_tokens", "total_tokens",
               "cost_usd", "downgraded"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([group_by, *columns])
    for row in report["groups"]:
        writer.writerow([_cell(row["key"]), *(row[c] for c in columns)])
    name = f"atrium-{tenant}-usage-by-{group_by}-{report['from']}-{report['to']}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _cell(value: str) -> str:
    """A spreadsheet reads a cell starting with = + - @ as a formula: a member's name must stay text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


@router.get(f"{ROUTE}/{{tenant}}/audit", response_class=HTMLResponse)
def audit(request: Request, services: ServicesDep, tenant: str,
          kind: Annotated[str | None, Query(max_length=60)] = None,
          person: Annotated[str | None, Query(max_length=200)] = None,
          start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
          end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
          before: Annotated[int | None, Query(ge=1)] = None) -> Response:
    admitted = _admit(request, services, tenant)
    if isinstance(admitted, HTMLResponse):
        return admitted
    return _page(request, services, admitted, tenant, "audit",
                 **tabs.audit(services, tenant, kind=kind or None, person=(person or "").strip() or None,
                              start=start, end=end, before=before))


@router.get(f"{ROUTE}/static/{{name}}")
def static(name: str) -> FileResponse:
    return PAGES.static(name)

