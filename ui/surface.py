"""The chat framework's own surface under Atrium's guard: its socket.io events, its files folder, its routes.

- Every socket.io event handler Chainlit registers is wrapped by the surface table's guard: blocked events are
  refused (and audited), `connect` takes only a server-checkable session id (a UUID), a valid session and the
  chat's own client, and `client_message` is rebuilt as a user message (the browser cannot store "answers").
- The session's files folder lives under the data dir and is resolved and checked to stay inside it (Chainlit
  builds it from the browser-sent session id: `../` or an absolute path escaped it).
- Chainlit's routes are checked against the table at start; an unlisted one is logged here and refused by the
  surface guard (backend/auth/surface_guard.py).
- Rating a message that is not the caller's is a 404, not Chainlit's 500.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainlit.types import DeleteFeedbackRequest, UpdateFeedbackRequest
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import Scope

from backend.auth.principal import Principal
from backend.auth.surface import CHAT_PREFIX, SurfaceTable, socket_entry, walk_routes
from backend.auth.surface_guard import query_param
from backend.chat.types import MAX_MESSAGE_CHARS
from ui.profiles import parse_profile

log = logging.getLogger("atrium.surface")

MAX_PROFILE_CHARS = 300
# A message up to twice the chat's limit reaches the handler, which says in words that it is too long (with advice
# for this user); beyond that it is refused at the socket, never stored.
MAX_SOCKET_MESSAGE_CHARS = 2 * MAX_MESSAGE_CHARS
MAX_FILE_REFERENCES = 50
Audit = Callable[..., object]
SessionPrincipal = Callable[[dict[str, str]], Principal | None]


def is_uuid(value: object) -> bool:
    """A canonical UUID string (what Chainlit's client makes for session, thread and message ids)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


# -- the files folder -------------------------------------------------------------------------------------------------


def confine_files(root: Path) -> Path:
    """Chainlit's per-session files folder, under `root` (the data dir's), never outside it whatever the id."""
    import chainlit.config
    import chainlit.server
    from chainlit.session import BaseSession

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    chainlit.config.FILES_DIRECTORY = root
    chainlit.server.FILES_DIRECTORY = root

    def files_dir(self: BaseSession) -> Path:
        folder = (root / str(self.id)).resolve()
        if folder.parent != root or not is_uuid(str(self.id)):
            raise ValueError(f"session id {str(self.id)[:60]!r} does not name a folder under {root}")
        return folder

    BaseSession.files_dir = property(files_dir)  # type: ignore[assignment,method-assign]
    _forget_messages_with_the_session()
    return root


def _forget_messages_with_the_session() -> None:
    """Chainlit keeps every message of a session in `chat_contexts` and never drops them: a process serving many
    sessions grew for ever. A deleted session's messages go with it."""
    from chainlit.chat_context import chat_contexts
    from chainlit.session import WebsocketSession

    if getattr(WebsocketSession.delete, "_atrium_forgets", False):
        return
    delete = WebsocketSession.delete

    async def delete_and_forget(self: WebsocketSession) -> None:
        try:
            await delete(self)
        finally:
            chat_contexts.pop(self.id, None)

    delete_and_forget._atrium_forgets = True  # type: ignore[attr-defined]
    WebsocketSession.delete = delete_and_forget  # type: ignore[method-assign]


# -- socket.io events ------------------------------------------------------------------------------------------------


class MessageRate:
    """At most `per_minute` chat messages a user sends through this process in any minute (sliding window)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._sent: dict[str, deque[float]] = {}

    def admit(self, subject: str) -> bool:
        now = self._clock()
        sent = self._sent.setdefault(subject, deque())
        while sent and now - sent[0] >= 60:
            sent.popleft()
        if len(sent) >= self.per_minute:
            return False
        sent.append(now)
        if len(self._sent) > 10_000:  # forget users idle for a minute
            self._sent = {k: v for k, v in self._sent.items() if v and now - v[-1] < 60}
        return True


class SocketGuard:
    def __init__(self, *, audit: Audit, session_principal: SessionPrincipal,
                 token_valid: Callable[[str | None], bool], sio: Any = None, messages_per_minute: int = 60) -> None:
        self.rate = MessageRate(messages_per_minute)
        self.audit = audit
        self.session_principal = session_principal
        self.token_valid = token_valid  # the session's token is still valid (not signed out, ended or expired)
        self.sio = sio

    def install(self, sio: Any) -> list[str]:
        """Wrap every handler of the default namespace; returns the events the table does not list (refused)."""
        self.sio = sio
        handlers: dict[str, Callable[..., Awaitable[Any]]] = sio.handlers.setdefault("/", {})
        unlisted = []
        for event, handler in list(handlers.items()):
            entry = socket_entry(event)
            if entry is None:
                unlisted.append(event)
            if getattr(handler, "_atrium_guarded", False):
                continue
            if entry is None or entry.guard.kind == "blocked":
                wrapped = self._blocked(event)
            elif event == "connect":
                wrapped = self._connect(handler)
            elif event == "client_message":
                wrapped = self._live(event, self._client_message(handler))
            elif event == "disconnect":
                wrapped = handler
            else:
                wrapped = self._live(event, handler)
            wrapped._atrium_guarded = True  # type: ignore[attr-defined]
            handlers[event] = wrapped
        for event in unlisted:
            log.error("socket event not in the surface table: refused", extra={"event": event})
        return unlisted

    def _record(self, reason: str, message: str, *, subject: str | None, ip: str | None, event: str) -> None:
        self.audit("denied", subject=subject, route=f"chat:socket:{event}", ip=ip, status=403, reason=reason,
                   detail={"message": message})

    def _blocked(self, event: str) -> Callable[..., Awaitable[None]]:
        async def refused(sid: str, *args: Any) -> None:
            from chainlit.session import WebsocketSession

            session = WebsocketSession.get(sid)
            subject = session.user.identifier if session is not None and session.user is not None else None
            await asyncio.to_thread(self._record, "event_blocked", f"the socket event {event!r} is not available",
                                    subject=subject, ip=None, event=event)
        return refused

    def _live(self, event: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """The socket's session is checked again on every event: a sign-out, an admin ending the user's sessions
        or the session's maximum age closes an open chat too, not only the next connection."""
        async def checked(sid: str, *args: Any) -> Any:
            from chainlit.session import WebsocketSession

            session = WebsocketSession.get(sid)
            if session is not None and not await asyncio.to_thread(self.token_valid, session.token):
                subject = session.user.identifier if session.user is not None else None
                await asyncio.to_thread(self._record, "session_ended", "the session has ended: sign in again",
                                        subject=subject, ip=None, event=event)
                if self.sio is not None:
                    await self.sio.disconnect(sid)
                return None
            return await original(sid, *args)
        return checked

    def _connect(self, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def connect(sid: str, environ: dict, auth: Any) -> Any:
            ip = environ.get("REMOTE_ADDR")
            from starlette.requests import cookie_parser

            cookies = cookie_parser(environ.get("HTTP_COOKIE", ""))
            principal = await asyncio.to_thread(self.session_principal, cookies) if cookies else None
            subject = principal.subject if principal else None
            problem = _auth_problem(auth)
            if principal is None:
                problem = problem or ("not_authenticated", "not signed in, or the session has ended")
            if problem is not None:
                await asyncio.to_thread(self._record, problem[0], problem[1], subject=subject, ip=ip,
                                        event="connect")
                raise ConnectionRefusedError(problem[1])
            clean = {"sessionId": auth["sessionId"].lower(), "clientType": "webapp", "userEnv": "{}",
                     "chatProfile": auth.get("chatProfile") or None,
                     # An id that cannot be one of ours resumes nothing: the chat says the conversation is not
                     # available and starts a new one, as for an unknown or foreign conversation.
                     "threadId": auth["threadId"] if is_uuid(auth.get("threadId")) else
                     (str(uuid.uuid4()) if auth.get("threadId") else None)}
            return await original(sid, environ, clean)
        return connect

    def _client_message(self, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def client_message(sid: str, payload: Any = None, *args: Any) -> Any:
            from chainlit.session import WebsocketSession
            from chainlit.utils import utc_now

            session = WebsocketSession.get(sid)
            if session is None or session.user is None:
                return None
            message = payload.get("message") if isinstance(payload, dict) else None
            subject = session.user.identifier
            if (not isinstance(message, dict) or not is_uuid(message.get("id"))
                    or not isinstance(message.get("output", ""), str)
                    or message.get("type", "user_message") != "user_message"):
                await asyncio.to_thread(self._record, "invalid_message",
                                        "a chat message from the browser is a user message with a UUID id and text",
                                        subject=subject, ip=None, event="client_message")
                return None
            # Refused here, before Chainlit stores or keeps anything: far too long (the handler answers a message a
            # little over the limit in words, with advice), or too many too fast (no model call needs to be
            # involved for a message to cost storage and memory).
            refusal = None
            if len(message.get("output") or "") > MAX_SOCKET_MESSAGE_CHARS:
                refusal = ("message_too_long", f"This message is far too long ({len(message['output']):,} characters;"
                           f" the limit is {MAX_MESSAGE_CHARS:,}): it was not sent. Shorten it, or add long text to "
                           "the knowledge base as a document.")
            elif not self.rate.admit(subject):
                refusal = ("too_many_messages", f"You are sending messages faster than {self.rate.per_minute} a "
                           "minute: this one was not sent. Wait a moment and send it again.")
            if refusal is not None:
                await asyncio.to_thread(self._record, refusal[0], refusal[1], subject=subject, ip=None,
                                        event="client_message")
                await session.emit("toast", {"message": refusal[1], "type": "error"})
                return None
            refs = payload.get("fileReferences") or []
            message_id = message["id"].lower()
            # The attached files go to the handler, not back to the page: Chainlit would echo each as an element
            # whose URL serves it from the upload folder (nothing is served from there).
            files = [session.files[r["id"]] for r in (refs if isinstance(refs, list) else [])[:MAX_FILE_REFERENCES]
                     if isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"] in session.files]
            if files:
                pending = getattr(session, ATTACHMENTS, None) or {}
                pending[message_id] = [Attachment(name=str(f["name"]), path=Path(f["path"])) for f in files]
                setattr(session, ATTACHMENTS, pending)
            # Rebuilt from what a user message is: its id and text. Type, author, metadata (an answer's turn id)
            # and thread come from the server, never from the browser.
            clean = {"message": {"id": message_id, "threadId": session.thread_id, "type": "user_message",
                                 "name": session.user.identifier, "output": message.get("output") or "",
                                 "createdAt": utc_now(), "metadata": {}},
                     "fileReferences": []}
            return await original(sid, clean, *args)
        return client_message


@dataclass(frozen=True)
class Attachment:
    """A file attached to a chat message: its name as the user gave it and where the upload put it."""

    name: str
    path: Path


ATTACHMENTS = "atrium_attachments"  # the session's files of messages not yet handled, by message id


def take_attachments(session: Any, message_id: str) -> list[Attachment]:
    """The files attached to this message of the session (once: they are handed over, then forgotten)."""
    pending = getattr(session, ATTACHMENTS, None) or {}
    return pending.pop(message_id, [])


def _auth_problem(auth: Any) -> tuple[str, str] | None:
    if not isinstance(auth, dict):
        return "invalid_session_id", "connect with the chat page's session data"
    if not is_uuid(auth.get("sessionId")):
        return "invalid_session_id", "the session id must be a UUID made by the chat page"
    if auth.get("clientType") not in (None, "webapp"):
        return "invalid_client", "only the chat page connects here"
    profile = auth.get("chatProfile")
    if profile is not None and (not isinstance(profile, str) or len(profile) > MAX_PROFILE_CHARS):
        return "invalid_profile", "the assistant's name is not valid"
    return None


# -- routes -----------------------------------------------------------------------------------------------------------


def unlisted_chat_routes(chainlit_app: Any, table: SurfaceTable) -> list[str]:
    """Chainlit's routes that the surface table does not list (each refused at run time)."""
    missing = []
    for route in walk_routes(chainlit_app.router.routes):
        path = CHAT_PREFIX + getattr(route, "path", "")
        methods = getattr(route, "methods", None) or {"GET", "POST"}  # a mount: the socket's transport
        template = path.replace(":str}", "}")
        if path == CHAT_PREFIX + "/ws/socket.io":
            template = path + "/"
        for method in sorted(set(methods) - {"HEAD"}) or ["HEAD"]:
            if path.endswith("{full_path:path}"):
                continue  # the single-page app's catch-all: only its own routes are listed
            if table.listed(method, template) is None:
                missing.append(f"{method} {template}")
    return missing


def chat_session_tenant(scope: Scope, principal: Principal) -> str | None:
    """The department of the caller's own chat session named by `?session_id=` (the chat's upload), or None."""
    from chainlit.session import WebsocketSession

    session_id = query_param(scope, "session_id")
    session = WebsocketSession.get_by_id(session_id) if is_uuid(session_id) else None
    if session is None or session.user is None or session.user.identifier != principal.subject:
        return None
    parsed = parse_profile(session.chat_profile)
    return parsed[0] if parsed else None


def socket_owner(scope: Scope) -> str | None:
    """The user of the connected chat socket whose transport id (engine.io `sid`) a request names; None when it
    names none (a new connection's handshake, or a socket that is gone)."""
    from chainlit.server import sio
    from chainlit.session import WebsocketSession

    eio_sid = query_param(scope, "sid")
    if not eio_sid:
        return None
    sid = sio.manager.sid_from_eio_sid(eio_sid, "/")
    session = WebsocketSession.get(sid) if sid else None
    return session.user.identifier if session is not None and session.user is not None else None


def install_route_overrides(chainlit_app: Any) -> None:
    """Routes placed before Chainlit's own of the same path. Chainlit answers 500 when its data layer refuses a
    rating (someone else's message, an unknown id): these answer 404 and keep everything else as Chainlit does
    it. Its sticky-session cookie took any value the browser sent: here only a session id."""
    from chainlit.auth import get_current_user
    from chainlit.data import get_data_layer
    from fastapi.routing import APIRoute

    not_yours = "no message of yours by that id (it is someone else's, or was deleted)"

    async def update_feedback(update: UpdateFeedbackRequest, current_user: Any = Depends(get_current_user)) -> dict:
        layer = get_data_layer()
        if layer is None or current_user is None:
            raise HTTPException(status_code=404, detail=not_yours)
        try:
            feedback_id = await layer.upsert_feedback(feedback=update.feedback)
        except (PermissionError, ValueError) as exc:
            raise HTTPException(status_code=404, detail=not_yours) from exc
        return {"success": True, "feedbackId": feedback_id}

    async def delete_feedback(payload: DeleteFeedbackRequest, current_user: Any = Depends(get_current_user)) -> dict:
        layer = get_data_layer()
        if layer is None or current_user is None or not await layer.delete_feedback(payload.feedbackId):
            raise HTTPException(status_code=404, detail=not_yours)
        return {"success": True}

    async def sticky_cookie(request: Request) -> JSONResponse:
        """A load balancer's sticky-session cookie, as Chainlit sets it, but only ever a session id (a UUID)."""
        try:
            session_id = (await request.json()).get("session_id")
        except (ValueError, AttributeError, RecursionError):
            session_id = None
        if not is_uuid(session_id):
            raise HTTPException(status_code=400, detail="session_id must be the chat page's session id (a UUID)")
        response = JSONResponse({"message": "Session cookie set"})
        https = request.url.scheme == "https"
        response.set_cookie("X-Chainlit-Session-id", session_id, path="/", httponly=True, secure=https,
                            samesite="none" if https else "lax")
        return response

    routes = chainlit_app.router.routes
    routes.insert(0, APIRoute("/feedback", update_feedback, methods=["PUT"]))
    routes.insert(0, APIRoute("/feedback", delete_feedback, methods=["DELETE"]))
    routes.insert(0, APIRoute("/set-session-cookie", sticky_cookie, methods=["POST"]))


class _NotTranslated(logging.Filter):
    """Chainlit warns on every page load in a language it has no file of its own for: the page's readme
    (chainlit_<lang>.md, which Atrium does not show), and its words when it falls back to the parent language
    (de-CH -> de) or to English (en-GB -> en-US). Both are Chainlit working as designed, for any browser language
    outside the shipped files (.chainlit/translations): noise in the log, dozens of lines per session, not a
    problem anyone can act on."""

    _FALLBACK = re.compile(r"^Translation file for \S+ not found\. Using ")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Translated markdown file for ") or self._FALLBACK.match(message))


def quiet_chainlit_logs() -> None:
    chainlit_log = logging.getLogger("chainlit")
    if not any(isinstance(f, _NotTranslated) for f in chainlit_log.filters):
        chainlit_log.addFilter(_NotTranslated())
