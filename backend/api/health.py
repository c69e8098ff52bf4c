"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    parts = services.readiness()
    failing = {k: v for k, v in parts.items() if v != "ok"}
    body = {"status": "ok" if not failing else "unavailable", "parts": parts,
            "models": services.llm.live.live, "models_excluded": services.llm.live.excluded,
            "models_retiring": services.llm.live.retiring,
            # Listed, not failing: one department's missing prompt must not take every department's pods out of
            # service (its chats answer 503 prompt_not_available, naming the same fix).
            "prompt_problems": services.prompt_problems()}
    if failing:
        body["failing"] = sorted(failing)
    return JSONResponse(body, status_code=503 if failing else 200)
