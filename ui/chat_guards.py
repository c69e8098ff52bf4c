"""The chat's own middlewares, in front of the requests they can concern only.

Each of them acts on the chat's paths or its socket alone (a socket closed before it opened, an empty upload to
/chat/project/file, the chat's HTML pages under /chat, the password sign-in at /chat/login) and passes any other
request on untouched; an API request (`/api/...`) is none of theirs. One prefix test here sends it past all four
at once: per request, four fewer middleware frames on the API's hot path (bench/gateway/cprofile_request.py).
The guards that do apply to the API (surface guard, browser security, body limit, observe, client IP) are
installed around this one, in app.py, and see every request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ui.login_errors import FriendlyLoginErrors
from ui.offline_page import OfflineChatPage
from ui.socket_guard import ClosedSocketGuard
from ui.upload_guard import EmptyUploadGuard

API_PREFIX = "/api/"


class ChatGuards:
    passes_plain_api_posts = True  # /api/ requests go straight to `app` (FastDispatch skips it for them)

    def __init__(self, app: ASGIApp, *, password_login: Callable[[], Any] | None = None) -> None:
        self.api = self.app = app
        # Outermost first, as app.py installed them one by one before.
        self.chat: ASGIApp = ClosedSocketGuard(  # a socket closed before it opened: no engineio traceback
            EmptyUploadGuard(  # an empty attached file: a 400 in words, not Chainlit's 500
                OfflineChatPage(FriendlyLoginErrors(app, password_login=password_login))))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            await self.api(scope, receive, send)
        else:
            await self.chat(scope, receive, send)
