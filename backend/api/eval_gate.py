"""GET /api/t/{tenant}/evals/{assistant}/gate: where a prompt version stands with the tenant's release gate.

The decision is backend/evals/gate.py's; the same one refuses the production label move (the prompt service asks it
through the container), so what the studio's Release card shows is what a promotion will meet.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from backend.api.deps import PromptsWrite, ServicesDep
from backend.api.limits import MAX_VERSION

router = APIRouter(prefix="/api/t/{tenant}/evals", tags=["evals"])


@router.get("/{assistant}/gate")
def gate(assistant: str, ctx: PromptsWrite, services: ServicesDep,
         version: Annotated[int | None, Query(ge=1, le=MAX_VERSION,
                                             description="the version to promote (default: the latest)")] = None
         ) -> dict[str, Any]:
    """The release gate's state for promoting `version` to production: off | passed | missing | stale | regressed |
    below_min | running, the run it judged, production's run it compared with, and the failing cases."""
    prompts = services.prompt_service
    cfg = prompts.assistant_tenant(ctx.tenant, assistant)
    wanted = version or prompts.store.latest(ctx.tenant, assistant)
    prompts.get(ctx.tenant, assistant, wanted)  # a version that does not exist is a 404, not "missing"
    production = prompts.store.labels(ctx.tenant, assistant).get("production")
    state = services.eval_gate.state(cfg, assistant, version=wanted, production=production)
    if state["enabled"] and state["state"] != "passed" and prompts.was_in_production(ctx.tenant, assistant, wanted):
        state.update(state="passed", failing=[], message=f"Version {wanted} was in production before: going back to it "
                                                         "is a rollback, which needs no new test run.")
    return state
