"""GET /api/me: what the caller's credentials map to (the operator's dry run)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import PrincipalDep, ServicesDep
from backend.auth.claims import missing_access_hint
from backend.auth.guard import is_operator

router = APIRouter(prefix="/api", tags=["identity"])


@router.get("/me")
def me(principal: PrincipalDep, services: ServicesDep) -> dict:
    data = principal.public()
    data["assistants"] = {
        t: [a.name for a in cfg.assistants]
        for t in principal.tenants if (cfg := services.registry.get(t)) is not None
    }
    if not principal.tenants and not is_operator(principal):
        data["no_access"] = "you are in no tenant: " + missing_access_hint(services.registry)
    return data
