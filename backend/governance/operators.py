"""What platform operators see across tenants (GET /api/admin/tenants and the /admin page): tenants, their usage
against budget, denials and suspicious access. Every view is itself an `admin_access` audit event and every
refusal of the page a `denied` one, recorded here before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from backend.auth.guard import AuditSink, is_operator
from backend.auth.principal import Principal
from backend.governance.audit_view import AuditEntry, AuditView
from backend.governance.ops_charts import OpsSeries, ops_series
from backend.governance.usage import UsageService
from backend.tenants import TenantRegistry

# "All" suspicious_access events, with a ceiling so a flood cannot make the page unusable; the page says
# when it is reached (the full list stays available at /api/admin/audit?kind=suspicious_access).
SUSPICIOUS_CAP = 1000


@dataclass(frozen=True)
class Overview:
    """The operator page's data (plain values and the tenants' configuration)."""

    tenants: list[dict[str, Any]]
    denials: list[AuditEntry]
    sign_in_prompts: list[AuditEntry]
    suspicious: list[AuditEntry]
    suspicious_capped: bool


class OperatorConsole:
    def __init__(self, *, registry: TenantRegistry, audit: AuditSink, audit_view: AuditView,
                 usage: UsageService | None) -> None:
        self.registry = registry
        self.audit = audit
        self.audit_view = audit_view
        self.usage = usage

    def tenants(self, subject: str, *, route: str, ip: str | None) -> list[dict[str, Any]]:
        """Every configured tenant, how it is recognised and where it is deployed (an audited read)."""
        self.audit_view.operator_read(subject, route=route, ip=ip)
        return [
            {"id": t.id, "name": t.name, "assistants": [a.name for a in t.assistants],
             "match": t.match.model_dump(), "roles": {r: rule.model_dump() for r, rule in t.roles.items()},
             "deployment_group": t.deployment_group}
            for t in self.registry.all()
        ]

    def admit_page(self, principal: Principal | None, *, page: str, route: str, ip: str | None) -> str | None:
        """None when `principal` may see the operator page `page` (the view is recorded as `admin_access`);
        else why not, `not_authenticated` (401) or `missing_role` (403), recorded as a denial — probing the
        operator page is worth a row too."""
        if principal is None or not is_operator(principal):
            reason = "not_authenticated" if principal is None else "missing_role"
            self.audit.record("denied", subject=principal.subject if principal else None, route=route, ip=ip,
                              status=401 if principal is None else 403, reason=reason,
                              detail={"page": page, "required": "platform_admin",
                                      "member_of": sorted(principal.tenants) if principal else []})
            return reason
        # A cross-tenant read is itself an audit event (as for /api/admin/*), recorded before anything is read.
        self.audit_view.operator_read(principal.subject, route=route, ip=ip, detail={"page": page})
        return None

    def overview(self, *, sign_in_pages: tuple[str, ...], denials_shown: int) -> Overview:
        """Tenants with this month's usage, the latest denials (the operator's own visits before signing in to
        `sign_in_pages` apart) and suspicious access. Call after `admit_page`."""
        view = self.audit_view
        suspicious = view.events(kind="suspicious_access", limit=SUSPICIOUS_CAP)
        return Overview(
            tenants=self._tenant_rows(),
            denials=view.denials(sign_in_pages=sign_in_pages, sign_in_prompts=False, limit=denials_shown),
            sign_in_prompts=view.denials(sign_in_pages=sign_in_pages, sign_in_prompts=True, limit=denials_shown),
            suspicious=suspicious, suspicious_capped=len(suspicious) >= SUSPICIOUS_CAP)

    def charts(self, *, start: date, end: date, sign_in_pages: tuple[str, ...]) -> OpsSeries | None:
        """The charts' numbers over [start, end] (None when usage is not recorded). Call after `admit_page`."""
        if self.usage is None:
            return None
        return ops_series(db=self.audit_view.db, usage=self.usage, registry=self.registry,
                          elsewhere=self.audit_view.elsewhere, start=start, end=end, sign_in_pages=sign_in_pages)

    def _tenant_rows(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.registry.all():
            usage = self.usage.report(tenant=t.id, start=None, end=None, group_by="assistant")["totals"] \
                if self.usage is not None else None
            budget = t.quotas.monthly_budget_usd
            rows.append({"id": t.id, "name": t.name, "assistants": [(a.name, a.title) for a in t.assistants],
                         "policy": t.model_policy, "quotas": t.quotas, "require_approval": t.require_approval,
                         "usage": usage,
                         "budget_pct": round(100 * usage["cost_usd"] / budget) if usage and budget else None})
        return rows
