"""Chainlit's data layer on Atrium's conversation service: the sidebar's chat history, resume, rename, delete
and thumbs up/down — each call scoped to the verified caller, never to an id the browser sent.

Chainlit checks thread authorship on some routes and not on others (feedback takes any message id), so the
caller is resolved here on every call and the service filters by it: the websocket session's user, or, on an
HTTP route, the user Chainlit just loaded from its verified session token through `get_user` (the first call
of every authenticated request). No caller, no data. Writes wait, like Chainlit's own data layers, for the
session's first user message (`queue_until_user_message`): a chat opened and left without a message leaves
nothing behind. The answers' citation panels (text elements) are stored with their conversation, in SQL, and
come back with it as data: URLs; uploaded files are not stored (they are in the knowledge base, or refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from chainlit.context import context_var
from chainlit.data.base import BaseDataLayer
from chainlit.data.utils import queue_until_user_message
from chainlit.session import WebsocketSession
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User
from fastapi import HTTPException

from backend.auth.guard import principal_of_claims
from backend.auth.principal import Principal
from backend.auth.request_context import request_line
from backend.chat.conversation_views import ChatUserView, ConversationView, ElementView, StepView
from backend.container import Services
from ui.chat_text import markdown_data_url
from ui.profiles import parse_profile, profile_name

DEPARTMENT_SEP = " · "  # "Sales · Discount limits" in the sidebar of a user in more than one department
STAGING_MARK = " (staging)"  # after the title of a conversation with a staging prompt, in the sidebar

# (identifier, claims) of the user Chainlit authenticated for the current HTTP request or socket connect.
_verified_caller: ContextVar[tuple[str, dict] | None] = ContextVar("atrium_chat_caller", default=None)


class AtriumDataLayer(BaseDataLayer):
    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    @property
    def _conversations(self):  # noqa: ANN202 - ConversationService, resolved per call (set at app start)
        conversations = self._services().conversations
        assert conversations is not None
        return conversations

    def _caller(self) -> Principal | None:
        ctx = context_var.get(None)
        user = ctx.session.user if ctx is not None else None
        if user is not None:
            claims = (user.metadata or {}).get("claims")
        else:
            verified = _verified_caller.get()
            if verified is None:
                return None
            claims = verified[1]
        services = self._services()
        return principal_of_claims(claims, lambda c: services.principal_from_claims(c, auth="session"))

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- users -----------------------------------------------------------------------------------------------------

    async def get_user(self, identifier: str) -> PersistedUser | None:
        row = await self._call(self._conversations.user, identifier)
        return _verified(row) if row is not None else None

    async def create_user(self, user: User) -> PersistedUser | None:
        """Called at every login: the stored claims are always the latest login's."""
        metadata = user.metadata or {}
        claims = metadata.get("claims") if isinstance(metadata.get("claims"), dict) else {}
        row = await self._call(self._conversations.remember_user, identifier=user.identifier,
                               display_name=user.display_name, provider=metadata.get("provider"), claims=claims)
        return _verified(row)

    # -- threads ---------------------------------------------------------------------------------------------------

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        principal = self._caller()
        if principal is None or (filters.userId and filters.userId != principal.subject):
            return PaginatedResponse(pageInfo=PageInfo(hasNextPage=False, startCursor=None, endCursor=None), data=[])
        page = await self._call(self._conversations.list, principal, limit=pagination.first or 20,
                                cursor=pagination.cursor, search=filters.search, feedback=filters.feedback)
        multi = len(principal.tenants) > 1  # the same title in two departments: say which is which
        data = [_thread(c, [], listed=True, department=self._department(c.tenant) if multi else None)
                for c in page.conversations]
        return PaginatedResponse(
            pageInfo=PageInfo(hasNextPage=page.has_more, startCursor=data[0]["id"] if data else None,
                              endCursor=data[-1]["id"] if data else None),
            data=data)

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        principal = self._caller()
        if principal is None:
            return None
        conversation = await self._call(self._conversations.get, principal, thread_id)
        if conversation is None:
            return None
        steps = await self._call(self._conversations.steps, principal, conversation)
        elements = await self._call(self._conversations.elements, principal, conversation)
        return _thread(conversation, steps, elements)

    async def get_thread_author(self, thread_id: str) -> str:
        """The caller, if the thread is the caller's; "" (Chainlit answers 404) for any other thread."""
        principal = self._caller()
        if principal is None:
            return ""
        conversation = await self._call(self._conversations.get, principal, thread_id, action=_attempted())
        return conversation.subject if conversation is not None else ""

    async def update_thread(self, thread_id: str, name: str | None = None, user_id: str | None = None,
                            metadata: dict | None = None, tags: list[str] | None = None) -> None:
        # metadata (the session's keys, sharing flags) and tags are not taken from the browser: the profile is
        # fixed when the thread is created and threads are never shared outside their owner.
        principal = self._caller()
        if principal is None:
            return
        in_session = context_var.get(None) is not None
        conversation = await self._ensure(principal, thread_id, first_message=name if in_session else None)
        if conversation is None or name is None:
            return
        if not in_session:  # the sidebar's rename dialog starts from the listed name, department and mark included
            prefix = self._department(conversation.tenant) + DEPARTMENT_SEP
            name = name[len(prefix):] if name.startswith(prefix) else name
            name = name.removesuffix(STAGING_MARK) if conversation.label == "staging" else name
            if not name.strip():  # refused, not stored as "" (the sidebar would show an empty entry)
                raise HTTPException(status_code=400, detail="A conversation needs a name: the old one is kept.")
        if not name.strip():
            return
        # In the session: the first message names it (if a message created it first); else: the rename route.
        await self._call(self._conversations.rename, principal, thread_id, name,
                         source="first_message" if in_session else "user")

    async def delete_thread(self, thread_id: str) -> None:
        principal = self._caller()
        if principal is not None:
            await self._call(self._conversations.delete, principal, thread_id)

    async def _ensure(self, principal: Principal, thread_id: str, *,
                      first_message: str | None = None) -> ConversationView | None:
        """The caller's thread; created from the session's chat profile on its first message."""
        conversation = await self._call(self._conversations.get, principal, thread_id)
        if conversation is not None:
            return conversation
        ctx = context_var.get(None)
        parsed = parse_profile(ctx.session.chat_profile) if ctx is not None else None
        if ctx is None or parsed is None or ctx.session.thread_id != thread_id:
            return None
        tenant, assistant, label = parsed
        return await self._call(self._conversations.create, principal, conversation_id=thread_id, tenant=tenant,
                                assistant=assistant, label=label, title=first_message)

    # -- steps -------------------------------------------------------------------------------------------------------

    @queue_until_user_message()
    async def create_step(self, step_dict: dict) -> None:
        await self._save_step(step_dict)

    @queue_until_user_message()
    async def update_step(self, step_dict: dict) -> None:
        await self._save_step(step_dict)

    async def _save_step(self, step: dict) -> None:
        principal = self._caller()
        thread_id = step.get("threadId")
        if principal is None or not thread_id or step.get("type") not in ("user_message", "assistant_message", "run"):
            return
        if not _of_this_session(thread_id):
            return
        if await self._ensure(principal, thread_id) is None:
            return
        turn_id = (step.get("metadata") or {}).get("turn_id")
        await self._call(self._conversations.save_step, principal, thread_id, step_id=step["id"],
                         type=step["type"], name=step.get("name") or "", output=step.get("output") or "",
                         parent_id=step.get("parentId"), created_at=_parse_iso(step.get("createdAt")),
                         turn_id=turn_id if isinstance(turn_id, int) else None)

    @queue_until_user_message()
    async def delete_step(self, step_id: str) -> None:
        principal = self._caller()
        if principal is not None:
            await self._call(self._conversations.delete_step, principal, step_id)

    # -- feedback --------------------------------------------------------------------------------------------------

    async def upsert_feedback(self, feedback: Feedback) -> str:
        principal = self._caller()
        ok = principal is not None and await self._call(self._conversations.feedback, principal, feedback.forId,
                                                        int(feedback.value), feedback.comment)
        if not ok:  # Chainlit turns this into an error response; nothing is stored
            raise PermissionError("this message is not in one of your conversations")
        return feedback.forId

    async def delete_feedback(self, feedback_id: str) -> bool:
        principal = self._caller()
        return principal is not None and await self._call(self._conversations.feedback, principal, feedback_id, None)

    # -- elements: the text side panels of messages --------------------------------------------------------------

    @queue_until_user_message()
    async def create_element(self, element: Any) -> None:
        """Text panels only (an answer's cited passages); files, images and custom elements are not kept."""
        principal = self._caller()
        thread_id = getattr(element, "thread_id", None)
        content = getattr(element, "content", None)
        if (principal is None or not thread_id or getattr(element, "type", None) != "text"
                or not isinstance(content, str) or not _of_this_session(thread_id)):
            return
        if await self._ensure(principal, thread_id) is None:
            return
        await self._call(self._conversations.save_element, principal, thread_id, element_id=element.id,
                         for_id=getattr(element, "for_id", None), name=element.name or "",
                         display=getattr(element, "display", "side"), content=content)

    async def get_element(self, thread_id: str, element_id: str) -> dict | None:
        principal = self._caller()
        if principal is None:
            return None
        row = await self._call(self._conversations.element, principal, thread_id, element_id)
        return _element(row) if row is not None else None

    @queue_until_user_message()
    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        principal = self._caller()
        if principal is not None and thread_id:
            await self._call(self._conversations.delete_element, principal, thread_id, element_id)

    # -- not stored ----------------------------------------------------------------------------------------------------

    async def get_favorite_steps(self, user_id: str) -> list:
        return []

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        return None

    def _department(self, tenant: str) -> str:
        config = self._services().registry.get(tenant)
        return config.name if config is not None else tenant


def _of_this_session(thread_id: str) -> bool:
    """In a chat session, Chainlit writes only for the session's thread; anything else is a leftover of a
    thread this session was refused (its start step was made before the chat moved to a thread of its own)."""
    ctx = context_var.get(None)
    return ctx is None or not isinstance(ctx.session, WebsocketSession) or ctx.session.thread_id == thread_id


def _verified(row: ChatUserView) -> PersistedUser:
    """The user Chainlit just authenticated: remembered as this request's caller, handed back to Chainlit."""
    _verified_caller.set((row.identifier, row.claims))
    return PersistedUser(id=row.identifier, identifier=row.identifier, display_name=row.display_name,
                         createdAt=_iso(row.created_at), metadata={"claims": row.claims, "provider": row.provider})


def _attempted() -> str:
    """What the HTTP request asking who owns a thread is about to do: Chainlit checks the author before its
    rename (PUT /project/thread) and delete (DELETE) routes, and a refusal records which was attempted."""
    method, path = request_line.get() or ("GET", "")
    if path.endswith("/project/thread"):
        return {"PUT": "rename", "DELETE": "delete"}.get(method, "read")
    return "read"


def _thread(c: ConversationView, steps: list[StepView], elements: list[ElementView] | None = None, *,
            listed: bool = False, department: str | None = None) -> ThreadDict:
    name = c.title or "New conversation"
    if listed and c.label == "staging":  # a prompt editor's tries are told apart from the real conversations
        name += STAGING_MARK
    return ThreadDict(
        id=c.id,
        # The sidebar groups by this date: a conversation continued today belongs under "Today".
        createdAt=_iso(c.updated_at if listed else c.created_at),
        name=f"{department}{DEPARTMENT_SEP}{name}" if department else name,
        userId=c.subject,
        userIdentifier=c.subject,
        tags=[],
        metadata={"chat_profile": profile_name(c.tenant, c.assistant, c.label)},
        steps=[_step(s) for s in steps],
        elements=[_element(e) for e in elements or []],  # type: ignore[misc]
    )


def _element(e: ElementView) -> dict:
    """A stored text panel as Chainlit's element dict. The browser fetches a text element's `url` for its
    content: a data: URL carries it from this (owner-checked) answer, so no file or extra route serves it."""
    return {"id": e.id, "threadId": e.conversation_id, "type": "text", "name": e.name, "display": e.display,
            "forId": e.for_id, "mime": "text/markdown",
            "url": markdown_data_url(e.content),
            "chainlitKey": None, "objectKey": None, "size": None, "language": None, "page": None, "props": None,
            "autoPlay": None, "playerConfig": None}


def _step(s: StepView) -> dict:
    at = _iso(s.created_at)
    step: dict[str, Any] = {"id": s.id, "threadId": s.conversation_id, "parentId": s.parent_id, "name": s.name,
                            "type": s.type, "output": s.output, "input": "", "createdAt": at, "start": at, "end": at,
                            "metadata": {}, "streaming": False, "isError": False}
    if s.feedback_value is not None:
        step["feedback"] = {"forId": s.id, "id": s.id, "value": s.feedback_value, "comment": s.feedback_comment}
    return step


def _iso(at: datetime) -> str:
    if at.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
