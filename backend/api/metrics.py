"""GET /metrics: the Prometheus text format, for the scraper holding ATRIUM_METRICS_TOKEN (a bearer token).

No token configured: a 404, as if the route did not exist (and nothing is collected: governance/metrics.py). A
missing or wrong token is a 401, audited like any refusal. No tenant credential opens it: the numbers span every
tenant, so the only key is the operators' scraper token.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from backend.api.deps import ServicesDep, client_ip
from backend.errors import NotAuthenticated, NotFound
from backend.governance.metrics import scraper_token_ok

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request, services: ServicesDep) -> Response:
    expected = services.settings.metrics_token
    if not expected or not services.metrics.enabled:
        raise NotFound("no route GET /metrics (set ATRIUM_METRICS_TOKEN to serve metrics)", code="not_found")
    if not scraper_token_ok(request.headers.get("authorization"), expected):
        await asyncio.to_thread(services.audit.record, "denied", route="/metrics", ip=client_ip(request),
                                status=401, reason="bad_metrics_token")
        raise NotAuthenticated("send `Authorization: Bearer <ATRIUM_METRICS_TOKEN>` (the scraper's token; tenant "
                               "credentials do not open /metrics)", code="bad_metrics_token",
                               headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    # Rendering reads the ingestion backlog (one SQL query): off the event loop.
    body, content_type = await asyncio.to_thread(services.metrics.render)
    return Response(body, media_type=content_type)
