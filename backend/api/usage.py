"""GET /api/t/{tenant}/usage: the tenant's model usage and cost (tenant admins)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from backend.api.deps import ServicesDep, TenantAdmin
from backend.api.params import IsoDate

router = APIRouter(prefix="/api/t/{tenant}", tags=["usage"])


@router.get("/usage")
def usage(
    ctx: TenantAdmin, services: ServicesDep,
    start: Annotated[IsoDate | None, Query(alias="from", description="first day, YYYY-MM-DD (UTC)")] = None,
    end: Annotated[IsoDate | None, Query(alias="to", description="last day, inclusive (9999-12-30 at the "
                                                                  "latest); at most 366 days after `from`")] = None,
    group_by: Literal["day", "model", "user", "assistant"] = "day",
) -> dict:
    assert services.usage is not None
    return services.usage.report(tenant=ctx.tenant, start=start, end=end, group_by=group_by)
