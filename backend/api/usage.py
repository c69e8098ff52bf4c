"""GET /api/t/{tenant}/usage: the tenant's model usage and cost (tenant admins); by user, each member against their
allowance; POST /api/t/{tenant}/usage/allowances: raise one member's allowance for the month."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import ServicesDep, TenantAdmin
from backend.api.params import IsoDate
from backend.auth.request_context import client_ip
from backend.governance.member_usage import MAX_MONTHLY_USD, MAX_TOKENS_PER_DAY

router = APIRouter(prefix="/api/t/{tenant}", tags=["usage"])


@router.get("/usage")
def usage(
    ctx: TenantAdmin, services: ServicesDep,
    start: Annotated[IsoDate | None, Query(alias="from", description="first day, YYYY-MM-DD (UTC)")] = None,
    end: Annotated[IsoDate | None, Query(alias="to", description="last day, inclusive (9999-12-30 at the "
                                                                  "latest); at most 366 days after `from`")] = None,
    group_by: Literal["day", "model", "user", "assistant"] = "day",
) -> dict:
    assert services.usage is not None and services.member_usage is not None
    report = services.usage.report(tenant=ctx.tenant, start=start, end=end, group_by=group_by)
    if group_by == "user":  # each member against their allowance (today, this month), whatever the range
        members = services.member_usage.members(ctx.tenant)
        owners = services.member_usage.key_owners(ctx.tenant)  # a key's calls count against its owner
        for group in report["groups"]:
            group["member"] = owners.get(group["key"], group["key"])
            group["allowance"] = members.get(group["member"])
    return report


class RaiseAllowance(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not ignored

    subject: str = Field(min_length=1, max_length=256, description="the member, as the usage report by user names "
                                                                   "them")
    tokens_per_day: int | None = Field(default=None, ge=0, le=MAX_TOKENS_PER_DAY,
                                       description="their tokens a day for the rest of this month")
    monthly_budget_usd: float | None = Field(default=None, ge=0, le=MAX_MONTHLY_USD,
                                             description="their dollars for this month")


@router.post("/usage/allowances")
def raise_allowance(body: RaiseAllowance, ctx: TenantAdmin, services: ServicesDep) -> dict:
    """Raise one member's allowance for the rest of this month (UTC), at once on every replica; audited."""
    assert services.member_usage is not None
    return services.member_usage.raise_allowance(
        ctx.principal, ctx.tenant, subject=body.subject, tokens_per_day=body.tokens_per_day,
        monthly_budget_usd=body.monthly_budget_usd, route=f"/api/t/{ctx.tenant}/usage/allowances", ip=client_ip.get())
