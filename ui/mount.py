"""Mounting the chat (Chainlit) into the app, under Atrium's guard."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI

from backend.settings import REPO_ROOT, Settings

log = logging.getLogger("atrium")


def mount_chat(app: FastAPI, settings: Settings) -> None:
    """Chainlit at /chat, under Atrium's rules: its sessions checked like the API's, its socket events, files
    folder and rating routes guarded (ui/surface.py), its noise quiet."""
    from chainlit.config import config as chainlit_config
    from chainlit.utils import mount_chainlit

    origins = list(chainlit_config.project.allow_origins)
    if settings.public_url:
        origins.append(settings.public_url.rstrip("/"))
    # Never every origin, whatever the config file says.
    chainlit_config.project.allow_origins = [o for o in origins if o != "*"]
    if settings.public_url:  # the page's share link is Atrium's own (else Chainlit's GitHub, dropped by the page)
        chainlit_config.ui.custom_meta_url = settings.public_url.rstrip("/") + "/chat"
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
    from ui.surface import (
        SocketGuard,
        confine_files,
        install_route_overrides,
        quiet_chainlit_logs,
        unlisted_chat_routes,
    )

    services = get_services()
    # Chainlit's own "only paths under the mount" middleware is a BaseHTTPMiddleware: a browser that goes away
    # mid-request made it log "No response returned" tracebacks, and the surface guard already routes by path.
    chainlit_app.user_middleware = [m for m in chainlit_app.user_middleware
                                    if getattr(m.cls, "__name__", "") != "ChainlitMiddleware"]
    quiet_chainlit_logs()
    confine_files(settings.data_dir / "chat-files")
    SocketGuard(audit=services.audit.record, session_principal=services.cookie_principal,
                token_valid=lambda token: services.sessions.verify(token).payload is not None,
                messages_per_minute=settings.chat_messages_per_minute).install(sio)
    install_route_overrides(chainlit_app)
    for route in unlisted_chat_routes(chainlit_app, SurfaceTable()):
        log.error("chat route not in the surface table: refused", extra={"route": route})
