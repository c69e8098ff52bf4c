"""Liveness and readiness.

/readyz answers anyone whether this replica is ready (200 `ok`, 503 `unavailable`): load balancers and probes
need nothing more. What is failing and why (parts, live models, missing provider keys, prompt problems with
their absolute paths) is for platform admins only, signed in or with a bearer JWT; the operations page (/admin)
shows the same. A probe sends no credentials and is not a refusal: nothing is audited for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from backend.api.deps import ServicesDep, get_principal
from backend.auth.guard import is_operator
from backend.auth.principal import Principal
from backend.auth.session_cookie import session_token
from backend.container import Services
from backend.errors import AtriumError

log = logging.getLogger("atrium")
router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(services: ServicesDep) -> dict:
    """Liveness, and which process answered: the deployment groups it serves (null: all) and its instance id, so
    a test or an operator behind a proxy can see where a request went. Nothing secret: the groups are in the
    manifests, and the id names a process, not a tenant."""
    served = services.registry.served_groups
    return {"status": "ok", "deployment_groups": sorted(served) if served is not None else None,
            "instance": services.instance}


class Readiness(BaseModel):
    """Whether this replica is ready. The other fields are for platform admins only (signed in, or a bearer JWT),
    and are left out, never null, for anyone else."""

    status: Literal["ok", "unavailable"]
    parts: dict[str, str] = Field(default_factory=dict,
                                  description="each part (database, vector store, ...): `ok` or why it fails")
    failing: list[str] = Field(default_factory=list, description="the parts that fail (only when some do)")
    models: dict[str, list[str]] = Field(default_factory=dict, description="tier -> its live model deployments")
    models_excluded: dict[str, str] = Field(default_factory=dict, description="deployment -> why it is left out "
                                                                              "(e.g. its provider's key is not set)")
    models_retiring: dict[str, str] = Field(default_factory=dict,
                                            description="live deployment -> its retirement date and successor")
    prompt_problems: dict[str, str] = Field(default_factory=dict,
                                            description="`tenant/assistant` -> why it has no prompt, and the fix")


# `responses` documents the body without converting each answer again.
@router.get("/readyz", responses={200: {"model": Readiness}})
async def readyz(request: Request, services: ServicesDep) -> JSONResponse:
    parts = await asyncio.to_thread(services.readiness)
    failing = {k: v for k, v in parts.items() if v != "ok"}
    _log_change(request, failing)
    body: dict = {"status": "ok" if not failing else "unavailable"}
    caller = await _caller(request, services)
    if caller is not None and is_operator(caller):
        body.update({"parts": parts, "models": services.llm.live.live, "models_excluded": services.llm.live.excluded,
                     "models_retiring": services.llm.live.retiring,
                     # Listed, not failing: one department's missing prompt must not take every department's pods
                     # out of service (its chats answer 503 prompt_not_available, naming the same fix).
                     "prompt_problems": await asyncio.to_thread(services.prompt_problems)})
        if failing:
            body["failing"] = sorted(failing)
    return JSONResponse(body, status_code=503 if failing else 200)


async def _caller(request: Request, services: Services) -> Principal | None:
    """Who asks, when they sent credentials. Credentials that fail are audited (get_principal does, as for any
    route) but still get the public answer: readiness never depends on who asks. Nor on whether the caller can be
    verified: with the database down a session cannot be (its revocation is checked there), and the log names
    the failing part instead."""
    if request.headers.get("authorization") is None and not session_token(request.cookies):
        return None
    try:
        return await get_principal(request, services)
    except AtriumError:
        return None
    except Exception as exc:  # noqa: BLE001 - e.g. the database this very answer reports as failing
        log.info("readyz: the caller could not be verified", extra={"error": type(exc).__name__})
        return None


def _log_change(request: Request, failing: dict[str, str]) -> None:
    """What fails, and why, in the log once per change (probes ask every few seconds)."""
    names = tuple(sorted(failing))
    if names == getattr(request.app.state, "readyz_failing", ()):
        return
    request.app.state.readyz_failing = names
    if failing:
        log.warning("not ready", extra={"failing": failing})
    else:
        log.info("ready again")
