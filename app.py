"""The one process: FastAPI with the API routers and pages, and Chainlit mounted at /chat.

`app` is built on first access (PEP 562), so importing this module does no I/O.
"""

from __future__ import annotations

import logging
import os
import secrets
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse

from backend.api.error_handlers import install_error_handlers
from backend.runtime import harden_cookie_parsing, tune_gc
from backend.settings import REPO_ROOT, Settings, get_settings

log = logging.getLogger("atrium")


def _auth_secret(settings: Settings) -> str:
    """CHAINLIT_AUTH_SECRET signs session cookies; generated once per data dir when not provided."""
    if settings.chainlit_auth_secret:
        return settings.chainlit_auth_secret
    path = settings.data_dir / ".chainlit_auth_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(settings: Settings | None = None, *, mount_chat: bool = True) -> FastAPI:
    """Build the app. `mount_chat=False` skips Chainlit (its server is a process-wide singleton, so
    in-process API tests build many apps without it; the chat is tested against a served process)."""
    from backend.container import build_services, set_services
    from backend.logs import setup_logging
    from backend.startup_checks import require_sound

    settings = settings or get_settings()
    setup_logging(settings.log_level)
    require_sound(settings)  # a multi-pod misconfiguration stops here, one `error:` line each (startup_checks.py)
    harden_cookie_parsing()  # before anything parses a Cookie header (backend/runtime.py)
    _configure_chainlit(settings)
    services = build_services(settings)
    set_services(services)
    app = _fastapi_app(services)
    _install_routes(app, services, settings)
    if mount_chat:
        from ui.mount import mount_chat as mount_chainlit_chat

        mount_chainlit_chat(app, settings)
    _install_guards(app, services, settings, chat=mount_chat)
    return app


def _configure_chainlit(settings: Settings) -> None:
    # Chainlit reads these at import; they must be set before anything imports it.
    os.environ.setdefault("CHAINLIT_APP_ROOT", str(REPO_ROOT))
    os.environ["CHAINLIT_AUTH_SECRET"] = _auth_secret(settings)
    # An IdP login with MFA easily takes longer than Chainlit's default 3 minutes for the OAuth state cookie.
    os.environ.setdefault("CHAINLIT_STATE_COOKIE_LIFETIME", "600")
    if settings.chainlit_url:
        os.environ.setdefault("CHAINLIT_URL", settings.chainlit_url)
    from chainlit.config import config as chainlit_config

    # The session cookie's and its token's lifetime (Chainlit signs both with it).
    chainlit_config.project.user_session_timeout = int(settings.session_hours * 3600)


def _fastapi_app(services: Any) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        log.info("atrium started", extra={"tiers": services.llm.live.live, "tenants": services.registry.ids()})
        tune_gc()  # start-up objects frozen, fewer young collections (backend/runtime.py, bench/gateway)
        yield
        services.close()

    from backend.api.deps import reject_unknown_query

    # FastAPI's own OpenTelemetry spans, metrics and logs are off: the Observe middleware (backend/api/observe.py)
    # makes the request's span, with the request id and the verified tenant, as the parent of Atrium's spans.
    app = FastAPI(title="Atrium", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  dependencies=[Depends(reject_unknown_query)],
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False})
    app.state.services = services
    install_error_handlers(app)
    return app


def _install_routes(app: FastAPI, services: Any, settings: Settings) -> None:
    from backend.api import routers
    from backend.api.docs import install_docs

    for router in routers():
        app.include_router(router)
    install_docs(app)  # /docs and /redoc from the app's own files; the schema names auth and error bodies

    from backend.auth.oidc import OidcLogin

    services.oidc_login = OidcLogin.from_settings(settings, secret=os.environ["CHAINLIT_AUTH_SECRET"])
    if services.oidc_login is not None:  # its start route must precede the Chainlit mount
        from backend.auth.oidc_web import install_oidc_login

        install_oidc_login(app, services.oidc_login, on_failure=lambda exc, ip: exc.record(services.audit, ip=ip))

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/chat")


def _install_guards(app: FastAPI, services: Any, settings: Settings, *, chat: bool) -> None:
    """The middlewares, innermost first (Starlette runs the last added first)."""
    from backend.api.browser_security import BrowserSecurity
    from backend.api.fast_dispatch import FastDispatch
    from backend.api.limits import BodyLimit
    from backend.auth.request_context import ClientIpContext
    from backend.auth.surface import SurfaceTable

    app.add_middleware(ClientIpContext)  # audit IPs for Chainlit's login hooks too
    if chat:  # the socket, upload, offline page and sign-in guards, skipped by /api/ requests (ui/chat_guards.py)
        from ui.chat_guards import ChatGuards

        app.add_middleware(ChatGuards, password_login=lambda: services.password_login)
    if services.oidc_login is not None:
        from backend.auth.oidc_logout import IdpLogout

        app.add_middleware(IdpLogout, login=services.oidc_login, sessions=services.sessions)  # ends the IdP's too
    table = SurfaceTable()
    _guard_surface(app, services, table)
    # A body over its limit is refused before anything reads it or authenticates its sender ...
    app.add_middleware(BodyLimit, settings=settings)
    # The plain chat completion past the router and the layers above that pass it untouched (fast_dispatch.py).
    app.add_middleware(FastDispatch)
    # ... and outermost of all, the browser's rules: their headers reach every response (413s too), and a
    # cross-site POST is refused before anything runs.
    app.add_middleware(BrowserSecurity, audit=services.audit, sessions=services.sessions,
                       public_url=settings.public_url, idp_url=settings.oidc_issuer, route_of=table.route_of)
    # Around everything: the request id (X-Request-ID), its lines' trace id, the HTTP span and metrics.
    from backend.api.observe import Observe

    app.add_middleware(Observe, metrics=services.metrics, route_of=table.route_of)


def _guard_surface(app: FastAPI, services: Any, table: Any) -> None:
    """Every route is in the surface table with the guard it really has (else the app does not start), and the
    chat's routes pass only as the table allows (backend/auth/surface.py)."""
    from backend.auth.surface import SurfaceError, verify_app_routes
    from backend.auth.surface_guard import SurfaceGuard

    problems = verify_app_routes(app, table)
    if problems:
        raise SurfaceError("routes and the surface table disagree:\n  " + "\n  ".join(problems))
    resolvers = {}
    owner = None
    if any(getattr(r, "path", "") == "/chat" for r in app.router.routes):
        from ui.surface import chat_session_tenant, socket_owner

        resolvers["chat_session"] = chat_session_tenant
        owner = socket_owner
    origins = frozenset(o for o in [services.settings.public_url or "", *_chat_origins()] if o)
    app.add_middleware(SurfaceGuard, table=table, session_caller=services.session_caller,
                       audit=services.audit.record, origins=origins, tenant_resolvers=resolvers, socket_owner=owner)


def _chat_origins() -> list[str]:
    from chainlit.config import config as chainlit_config

    return [o for o in chainlit_config.project.allow_origins if o != "*"]


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
