"""GET /api/t/{tenant}/usage: the tenant's model usage and cost (tenant admins)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from backend.api.deps import ServicesDep, TenantAdmin

router = APIRouter(prefix="/api/t/{tenant}", tags=["usage"])


@router.get("/usage")
def usage(
    ctx: TenantAdmin, services: ServicesDep,
    start: Annotated[date | None, Query(alias="from", description="first day, YYYY-MM-DD (UTC)")] = None,
    end: Annotated[date | None, Query(alias="to", description="last day, inclusive")] = None,
    group_by: Literal["day", "model", "user", "assistant"] = "day",
) -> dict:
    assert services.usage is not None
    return services.usage.report(tenant=ctx.tenant, start=start, end=end, group_by=group_by)
