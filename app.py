"""The one process: FastAPI with the API routers and pages, and Chainlit mounted at /chat.

`app` is built on first access (PEP 562), so importing this module does no I/O.
"""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api.openai_errors import is_openai_path, openai_error
from backend.errors import AtriumError
from backend.runtime import tune_gc
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


def _error_body(code: str, message: str, extra: dict | None = None) -> dict[str, Any]:
    return {"error": code, "detail": message, **(extra or {})}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AtriumError)
    async def _atrium_error(request: Request, exc: AtriumError) -> JSONResponse:
        if is_openai_path(request.url.path):  # OpenAI-compatible routes answer in OpenAI's error shape
            return openai_error(exc.status_code, str(exc.extra.get("limit") or exc.code), exc.message,
                                headers=exc.headers, param=exc.extra.get("param"))
        return JSONResponse(_error_body(exc.code, exc.message, exc.extra), status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_describe_problem(e) for e in exc.errors()]
        if is_openai_path(request.url.path):
            first = next(iter(exc.errors()), {})
            # A JSON syntax error's location is a character offset, not a parameter.
            loc = () if first.get("type") == "json_invalid" else first.get("loc") or ()
            param = ".".join(str(p) for p in loc if p != "body") or None
            return openai_error(422, "invalid_request", "; ".join(problems), param=param)
        return JSONResponse(_error_body("invalid_request", "; ".join(problems)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework errors (unknown route, wrong method) in the same shape as everything else.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; the API is documented at /docs"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            detail = f"{request.method} is not allowed on {request.url.path}"
            if allowed:  # Starlette names only the first matching route's methods (GET and DELETE are two)
                detail += f"; use {', '.join(allowed)}"
                headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
                exc = StarletteHTTPException(405, detail, headers=headers)
        if is_openai_path(request.url.path):
            return openai_error(exc.status_code, code, str(detail), headers=exc.headers)
        return JSONResponse(_error_body(code, str(detail)), status_code=exc.status_code, headers=exc.headers)


    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a caller's mistake: the traceback goes to the log under a reference the caller can quote;
        # the body stays JSON in the route's error shape (never Starlette's plain-text "Internal Server Error")
        # and never carries the exception's text (it may hold internals, or bytes that do not encode).
        ref = uuid.uuid4().hex[:12]
        log.error("unhandled error", exc_info=exc,
                  extra={"ref": ref, "method": request.method, "path": request.url.path})
        detail = f"internal error ({type(exc).__name__}); reference {ref} in the server log"
        if is_openai_path(request.url.path):
            return openai_error(500, "internal_error", detail)
        return JSONResponse(_error_body("internal_error", detail), status_code=500)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (routers are included without a prefix of their own)."""
    def walk(routes: list[Any]) -> Any:
        for route in routes:
            inner = getattr(route, "original_router", None)
            yield from walk(inner.routes) if inner is not None else (route,)

    methods: set[str] = set()
    for route in walk(request.app.router.routes):
        regex, verbs = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and verbs and regex.match(request.url.path):
            methods |= set(verbs)
    return sorted(methods - {"HEAD"})


def _describe_problem(error: dict) -> str:
    """One validation problem in words a caller can act on."""
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON ({reason} at character {loc[-1] if loc else '?'})"
    where = ".".join(loc) or "the request body"
    if not loc and error.get("type") in ("model_attributes_type", "dict_type"):  # text, or a JSON array
        return "the request body must be a JSON object (send Content-Type: application/json)"
    if error.get("type") == "extra_forbidden":
        return f"{where}: unknown field (this endpoint does not take it; its fields are documented at /docs)"
    if error.get("type") == "string_unicode":  # a lone UTF-16 surrogate ("\\ud800" in JSON): not text
        return (f"{where}: not valid Unicode text (a lone UTF-16 surrogate, an unpaired \\ud800-\\udfff escape); "
                "send the character as a surrogate pair or remove it")
    return f"{where}: {error.get('msg')}"


def create_app(settings: Settings | None = None, *, mount_chat: bool = True) -> FastAPI:
    """Build the app. `mount_chat=False` skips Chainlit (its server is a process-wide singleton, so
    in-process API tests build many apps without it; the chat is tested against a served process)."""
    from backend.container import build_services, set_services
    from backend.logs import setup_logging

    settings = settings or get_settings()
    setup_logging(settings.log_level)
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

    services = build_services(settings)
    set_services(services)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        log.info("atrium started", extra={"tiers": services.llm.live.live, "tenants": services.registry.ids()})
        tune_gc()  # start-up objects frozen, fewer young collections (backend/runtime.py, bench/gateway)
        yield
        services.close()

    from backend.api.deps import reject_unknown_query

    app = FastAPI(title="Atrium", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  dependencies=[Depends(reject_unknown_query)])
    app.state.services = services
    install_error_handlers(app)
    from backend.auth.request_context import ClientIpContext

    app.add_middleware(ClientIpContext)  # audit IPs for Chainlit's login hooks too
    if mount_chat:
        from ui.login_errors import FriendlyLoginErrors
        from ui.offline_page import OfflineChatPage
        from ui.upload_guard import EmptyUploadGuard

        app.add_middleware(FriendlyLoginErrors)
        app.add_middleware(OfflineChatPage)
        app.add_middleware(EmptyUploadGuard)  # an empty attached file: a 400 in words, not Chainlit's 500

    from backend.api import routers
    from backend.api.docs import install_docs

    for router in routers():
        app.include_router(router)
    install_docs(app)  # /docs and /redoc from the app's own files; the schema names auth and error bodies

    from backend.auth.oidc import OidcLogin

    services.oidc_login = OidcLogin.from_settings(settings, secret=os.environ["CHAINLIT_AUTH_SECRET"])
    if services.oidc_login is not None:  # its start route must precede the Chainlit mount
        from backend.auth.oidc_web import install_oidc_login

        install_oidc_login(app, services.oidc_login, on_failure=lambda exc, ip: services.audit.login_denied(exc, ip=ip))
        from backend.auth.oidc_logout import IdpLogout

        app.add_middleware(IdpLogout, login=services.oidc_login, sessions=services.sessions)  # ends the IdP's too

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/chat")

    if mount_chat:
        _mount_chat(app, settings)
    _guard_surface(app, services)
    from backend.api.browser_security import BrowserSecurity
    from backend.api.limits import BodyLimit

    # A body over its limit is refused before anything reads it or authenticates its sender ...
    app.add_middleware(BodyLimit, settings=settings)
    # ... and outermost of all, the browser's rules: their headers reach every response (413s too), and a
    # cross-site POST is refused before anything runs.
    app.add_middleware(BrowserSecurity, audit=services.audit, sessions=services.sessions,
                       public_url=settings.public_url, idp_url=settings.oidc_issuer)
    return app


def _mount_chat(app: FastAPI, settings: Settings) -> None:
    from chainlit.config import config as chainlit_config
    from chainlit.utils import mount_chainlit

    origins = list(chainlit_config.project.allow_origins)
    if settings.public_url:
        origins.append(settings.public_url.rstrip("/"))
    # Never every origin, whatever the config file says.
    chainlit_config.project.allow_origins = [o for o in origins if o != "*"]
    mount_chainlit(app=app, target=str(Path(REPO_ROOT) / "ui" / "chat.py"), path="/chat")
    from ui.session_tokens import install as install_session_tokens

    install_session_tokens(app.state.services)  # Chainlit's routes and socket refuse what the API refuses
    _guard_chat(settings)


def _guard_chat(settings: Settings) -> None:
    """Chainlit's socket events, files folder and rating routes under Atrium's rules (ui/surface.py)."""
    from chainlit.server import app as chainlit_app
    from chainlit.server import sio

    from backend.auth.surface import SurfaceTable
    from backend.container import get_services
    from ui.surface import SocketGuard, confine_files, install_route_overrides, unlisted_chat_routes

    services = get_services()
    confine_files(settings.data_dir / "chat-files")
    SocketGuard(audit=services.audit.record, session_principal=services.cookie_principal,
                token_valid=lambda token: services.sessions.verify(token).payload is not None).install(sio)
    install_route_overrides(chainlit_app)
    for route in unlisted_chat_routes(chainlit_app, SurfaceTable()):
        log.error("chat route not in the surface table: refused", extra={"route": route})


def _guard_surface(app: FastAPI, services: Any) -> None:
    """Every route is in the surface table with the guard it really has (else the app does not start), and the
    chat's routes pass only as the table allows (backend/auth/surface.py)."""
    from backend.auth.surface import SurfaceError, SurfaceTable, verify_app_routes
    from backend.auth.surface_guard import SurfaceGuard

    table = SurfaceTable()
    problems = verify_app_routes(app, table)
    if problems:
        raise SurfaceError("routes and the surface table disagree:\n  " + "\n  ".join(problems))
    resolvers = {}
    if any(getattr(r, "path", "") == "/chat" for r in app.router.routes):
        from ui.surface import chat_session_tenant

        resolvers["chat_session"] = chat_session_tenant
    origins = frozenset(o for o in [services.settings.public_url or "", *_chat_origins()] if o)
    app.add_middleware(SurfaceGuard, table=table, session_principal=services.cookie_principal,
                       audit=services.audit.record, origins=origins, tenant_resolvers=resolvers)


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
