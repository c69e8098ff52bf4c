"""What ConversationService hands out: plain, frozen data (no SQL rows), so that its callers — Chainlit's data
layer in ui/history.py above all — never hold a database object, and a change to a table is not a change to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from backend.db.models import ChatUser, Conversation, ConversationElement, ConversationStep


@dataclass(frozen=True)
class ChatUserView:
    """A chat user as their latest login left them (Chainlit reloads its user from this)."""

    identifier: str  # the principal's subject
    display_name: str | None
    provider: str | None  # password | oidc
    created_at: datetime
    claims: dict = field(default_factory=dict)  # of the latest login: the principal is re-derived from them

    @classmethod
    def of(cls, row: ChatUser) -> ChatUserView:
        return cls(identifier=row.identifier, display_name=row.display_name, provider=row.provider,
                   claims=dict(row.claims or {}), created_at=row.created_at)


@dataclass(frozen=True)
class ConversationView:
    """One of the caller's conversations: one tenant and assistant, fixed at creation."""

    id: str
    tenant: str
    subject: str  # the owner
    assistant: str
    label: str  # production | staging
    title: str | None
    title_source: str | None  # first_message | model | user
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Conversation) -> ConversationView:
        return cls(id=row.id, tenant=row.tenant, subject=row.subject, assistant=row.assistant, label=row.label,
                   title=row.title, title_source=row.title_source, created_at=row.created_at,
                   updated_at=row.updated_at)


@dataclass(frozen=True)
class StepView:
    """A message of a conversation (user or assistant, or the run an answer belongs to), with its rating."""

    id: str
    conversation_id: str
    tenant: str
    type: str  # user_message | assistant_message | system_message | run
    name: str
    output: str
    parent_id: str | None
    turn_id: int | None
    created_at: datetime
    feedback_value: int | None  # 1 = helpful, 0 = not helpful
    feedback_comment: str | None

    @classmethod
    def of(cls, row: ConversationStep) -> StepView:
        return cls(id=row.id, conversation_id=row.conversation_id, tenant=row.tenant, type=row.type, name=row.name,
                   output=row.output, parent_id=row.parent_id, turn_id=row.turn_id, created_at=row.created_at,
                   feedback_value=row.feedback_value, feedback_comment=row.feedback_comment)


@dataclass(frozen=True)
class ElementView:
    """A text side panel of a message (an answer's cited passage)."""

    id: str
    conversation_id: str
    tenant: str
    for_id: str | None  # the message it belongs to
    name: str
    display: str  # side | inline | page
    content: str
    created_at: datetime

    @classmethod
    def of(cls, row: ConversationElement) -> ElementView:
        return cls(id=row.id, conversation_id=row.conversation_id, tenant=row.tenant, for_id=row.for_id,
                   name=row.name, display=row.display, content=row.content, created_at=row.created_at)


@dataclass(frozen=True)
class Page:
    """A page of the caller's conversations, newest first."""

    conversations: list[ConversationView]
    has_more: bool
