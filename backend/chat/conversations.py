"""Chat history: each user's conversations, scoped to the user *and* the tenants the user belongs to now.

A conversation is owned by one subject and belongs to one tenant and assistant, fixed at creation from the
chat profile the user picked (checked against the principal like every chat turn). Listing, reading,
renaming, deleting and rating only ever see the caller's own conversations in tenants the caller is still a
member of; anything else behaves as "not found" and is audited as a denial — once per user, conversation and
action within DENIAL_REPEAT_S (Chainlit asks the data layer several times for one page load, and one look must
not read as repeated probing). Titles are written by the `fast` tier as an internal task (quota and usage like
any call), or left as the first message (or the attached files' names when that message was only files).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from backend.auth.guard import AccessGuard, allowed, decide
from backend.auth.principal import Principal
from backend.auth.request_context import client_ip
from backend.chat.conversation_views import ChatUserView, ConversationView, ElementView, Page, StepView
from backend.db.engine import Database
from backend.db.models import Conversation, ConversationElement, ConversationStep
from backend.db.repositories import conversations as repo
from backend.errors import AtriumError
from backend.governance.audit import AuditLog
from backend.tenants import TenantRegistry

if TYPE_CHECKING:
    from backend.chat.pipeline import ChatService

log = logging.getLogger("atrium.chat")

TitleMode = Literal["auto", "model", "off"]
TITLE_TASK = "title"
TITLE_CHARS = 80
_CLIP = 600  # of the question and answer a title is written from
TITLE_SYSTEM = ("Write a short title (2 to 6 words) for the conversation below, in the language of the question. "
                "Reply with the title only: no quotes, no label, no full stop.")
_TITLE_WRAP = " \t\"'`*#“”‘’«»"
_TITLE_LABEL = re.compile(r"^(?:conversation )?title\s*[:\-–]\s*", re.I)
# "run": the step Chainlit wraps each answer in (the answer's parent); Chainlit's thumbs rate the run, and the
# rating buttons of a reopened conversation only show under answers whose run is there.
STEP_CHARS = 100_000  # a stored message (the chat refuses questions over 20,000 characters anyway)
STEP_TYPES = frozenset({"user_message", "assistant_message", "system_message", "run"})
ELEMENT_CHARS = 20_000  # a stored side panel (a cited passage is a few hundred characters)
ELEMENT_DISPLAYS = frozenset({"side", "inline", "page"})
FEEDBACK_TEXT_CHARS = 600  # of a rated exchange's question in the feedback report (the studio cuts answers the same)
DENIAL_REPEAT_S = 30.0  # the same user, conversation and action denied again within this: one audit row


class ConversationService:
    """Hands out plain data (backend/chat/conversation_views.py), never the SQL rows it reads and writes."""

    def __init__(self, *, db: Database, registry: TenantRegistry, audit: AuditLog, chat: ChatService,
                 titles: TitleMode = "auto") -> None:
        self.db = db
        self.registry = registry
        self.audit = audit
        self.access = AccessGuard(audit=audit, configured=lambda tenant: registry.get(tenant) is not None)
        self.chat = chat
        self.titles = titles
        self._denied: dict[tuple[str, str, str], float] = {}  # (subject, conversation/message, action) -> when
        self._denied_lock = threading.Lock()

    # -- users: Chainlit reloads its user from the latest login's claims -------------------------------------------

    def remember_user(self, *, identifier: str, display_name: str | None, provider: str | None,
                      claims: dict) -> ChatUserView:
        with self.db.session() as session:
            return ChatUserView.of(repo.upsert_chat_user(session=session, identifier=identifier,
                                                         display_name=display_name, provider=provider, claims=claims))

    def user(self, identifier: str) -> ChatUserView | None:
        with self.db.session() as session:
            row = repo.get_chat_user(session=session, identifier=identifier)
            return ChatUserView.of(row) if row is not None else None

    # -- conversations ---------------------------------------------------------------------------------------------

    def create(self, principal: Principal, *, conversation_id: str, tenant: str, assistant: str,
               label: str = "production", title: str | None = None) -> ConversationView | None:
        """None when the principal may not chat there (the chat turn itself refuses and audits that) or the
        id is taken by a conversation of someone else."""
        config = self.registry.get(tenant)
        if (config is None or config.assistant(assistant) is None
                or not allowed(principal, tenant, "chat" if label == "production" else "prompts:write")):
            return None
        row = Conversation(id=conversation_id, tenant=tenant, subject=principal.subject, assistant=assistant,
                           label=label, title=_clip_title(title) if title else None,
                           title_source="first_message" if title else None)
        with self.db.session() as session:
            created = repo.create_conversation(session=session, conversation=row)
            view = ConversationView.of(created) if created is not None else None
        if view is None:  # created meanwhile (the same user's other event) or someone else's id
            return self.get(principal, conversation_id, action="create")
        return view

    def get(self, principal: Principal, conversation_id: str, *, action: str = "read") -> ConversationView | None:
        """The caller's conversation; None when there is none, it was deleted, or it is not the caller's (audited)."""
        row = self._owned(principal, conversation_id, action=action)
        return ConversationView.of(row) if row is not None else None

    def _owned(self, principal: Principal, conversation_id: str, *, action: str) -> Conversation | None:
        with self.db.session() as session:
            row = repo.get_conversation(session=session, conversation_id=conversation_id)
        if row is None:
            return None
        if row.deleted and row.subject == principal.subject:
            return None  # the owner deleted it: gone, not a denial
        denial = decide(principal, row.tenant, None) if row.subject == principal.subject else None
        if row.subject != principal.subject or denial is not None:
            # One's own conversation in a department served by another deployment group is that group's to show.
            reason = "not_owner" if denial is None else (
                "served_elsewhere" if denial.code == "served_elsewhere" else "not_member")
            self._deny(principal, row.tenant, reason, {"conversation": conversation_id, "action": action})
            return None
        return row

    def was_deleted(self, principal: Principal, conversation_id: str) -> bool:
        """Whether the caller deleted this conversation (a tab that still shows it cannot write to it any more)."""
        with self.db.session() as session:
            row = repo.get_conversation(session=session, conversation_id=conversation_id)
        return row is not None and row.deleted and row.subject == principal.subject

    def name_from_files(self, principal: Principal, conversation_id: str, filenames: list[str], *, tenant: str,
                        assistant: str, label: str = "production") -> bool:
        """A conversation whose first message is only attached files is named after them ("Uploaded
        pricing-2027.pdf"); created here if the message has not created it yet. Never renames a titled one."""
        title = files_title(filenames)
        if not title:
            return False
        if self._owned(principal, conversation_id, action="title") is None:
            if self.create(principal, conversation_id=conversation_id, tenant=tenant, assistant=assistant,
                           label=label, title=title) is None:
                return False
        return self.rename(principal, conversation_id, title, source="first_message")

    def list(self, principal: Principal, *, limit: int = 20, cursor: str | None = None, search: str | None = None,
             feedback: int | None = None) -> Page:
        before: tuple[datetime, str] | None = None
        if cursor:
            last = self._owned(principal, cursor, action="list")
            if last is not None:
                before = (last.updated_at, last.id)
        limit = max(1, min(limit, 100))
        with self.db.session() as session:
            rows = repo.list_conversations(session=session, subject=principal.subject,
                                           tenants=sorted(principal.tenants), limit=limit + 1, before=before,
                                           search=(search or "").strip()[:200] or None, feedback=feedback)
            return Page([ConversationView.of(r) for r in rows[:limit]], len(rows) > limit)

    def steps(self, principal: Principal, conversation: ConversationView) -> list[StepView]:
        if conversation.subject != principal.subject:  # a conversation from get() already passed this
            return []
        with self.db.session() as session:
            return [StepView.of(s) for s in repo.list_steps(session=session, conversation_id=conversation.id,
                                                             tenant=conversation.tenant)]

    def rename(self, principal: Principal, conversation_id: str, title: str, *, source: str = "user") -> bool:
        row = self._owned(principal, conversation_id, action="rename")
        title = _clip_title(title)
        if row is None or not title:
            return False
        if (source != "user" and row.title_source == "user") or (source == "first_message" and row.title):
            return True  # a name the user chose is never replaced; the first message only names an untitled one
        with self.db.session() as session:
            row = repo.get_conversation(session=session, conversation_id=conversation_id) or row
            repo.update_conversation(session=session, conversation=row, title=title, title_source=source)
        return True

    def delete(self, principal: Principal, conversation_id: str) -> bool:
        row = self._owned(principal, conversation_id, action="delete")
        if row is None:
            return False
        with self.db.session() as session:
            repo.delete_conversation(session=session, conversation_id=row.id, tenant=row.tenant)
        return True

    # -- messages and feedback -------------------------------------------------------------------------------------

    def save_step(self, principal: Principal, conversation_id: str, *, step_id: str, type: str, name: str,
                  output: str, parent_id: str | None = None, created_at: datetime | None = None,
                  turn_id: int | None = None) -> bool:
        if type not in STEP_TYPES:  # tool runs and other internals are not history
            return False
        row = self._owned(principal, conversation_id, action="write")
        if row is None:
            return False
        step = ConversationStep(id=step_id, conversation_id=row.id, tenant=row.tenant, type=type, name=name[:200],
                                output="" if type == "run" else output[:STEP_CHARS],
                                parent_id=parent_id[:64] if parent_id else None,
                                turn_id=turn_id if type == "assistant_message" else None)
        if created_at is not None:
            step.created_at = created_at
        with self.db.session() as session:
            try:
                repo.save_step(session=session, step=step, subject=principal.subject)
            except ValueError:
                self._deny_step(principal, step_id, row.tenant, "write")
                return False
        return True

    def delete_step(self, principal: Principal, step_id: str) -> bool:
        step = self._own_step(principal, step_id, action="delete_message")
        if step is None:
            return False
        with self.db.session() as session:
            repo.delete_step(session=session, step_id=step.id, conversation_id=step.conversation_id,
                             tenant=step.tenant)
        return True

    # -- side panels of messages (the answer's cited passages) -------------------------------------------------

    def save_element(self, principal: Principal, conversation_id: str, *, element_id: str, for_id: str | None,
                     name: str, display: str, content: str) -> bool:
        """A text side panel of a message in one of the caller's conversations (stored in SQL like the
        messages, scoped to the conversation's tenant)."""
        row = self._owned(principal, conversation_id, action="write")
        if row is None:
            return False
        element = ConversationElement(id=element_id[:64], conversation_id=row.id, tenant=row.tenant,
                                      for_id=for_id[:64] if for_id else None, name=name[:200],
                                      display=display if display in ELEMENT_DISPLAYS else "side",
                                      content=content[:ELEMENT_CHARS])
        with self.db.session() as session:
            try:
                repo.save_element(session=session, element=element)
            except ValueError:
                self._deny(principal, row.tenant, "not_owner", {"element": element_id, "action": "write"})
                return False
        return True

    def elements(self, principal: Principal, conversation: ConversationView) -> list[ElementView]:
        if conversation.subject != principal.subject:  # a conversation from get() already passed this
            return []
        with self.db.session() as session:
            return [ElementView.of(e) for e in repo.list_elements(session=session, conversation_id=conversation.id,
                                                                  tenant=conversation.tenant)]

    def element(self, principal: Principal, conversation_id: str, element_id: str) -> ElementView | None:
        row = self._owned(principal, conversation_id, action="read")
        if row is None:
            return None
        with self.db.session() as session:
            element = repo.get_element(session=session, element_id=element_id, conversation_id=row.id,
                                       tenant=row.tenant)
            return ElementView.of(element) if element is not None else None

    def delete_element(self, principal: Principal, conversation_id: str, element_id: str) -> bool:
        row = self._owned(principal, conversation_id, action="delete_element")
        if row is None:
            return False
        with self.db.session() as session:
            repo.delete_element(session=session, element_id=element_id, conversation_id=row.id, tenant=row.tenant)
        return True

    def feedback(self, principal: Principal, step_id: str, value: int | None, comment: str | None = None) -> bool:
        """Thumbs up (1) or down (0) on one of the caller's own assistant messages; None clears it."""
        step = self._own_step(principal, step_id, action="feedback")
        if step is None:
            return False
        if value not in (0, 1, None):
            raise ValueError("feedback is 1 (helpful) or 0 (not helpful)")
        with self.db.session() as session:
            step = repo.get_step(session=session, step_id=step_id) or step
            repo.set_feedback(session=session, step=step, value=value, comment=(comment or None) and comment[:2000])
        return True

    def _own_step(self, principal: Principal, step_id: str, *, action: str) -> ConversationStep | None:
        with self.db.session() as session:
            step = repo.get_step(session=session, step_id=step_id)
        if step is None:
            return None
        if self._owned(principal, step.conversation_id, action=action) is None:
            return None
        return step

    def _deny_step(self, principal: Principal, step_id: str, tenant: str, action: str) -> None:
        self._deny(principal, tenant, "not_owner", {"message": step_id, "action": action})

    def _deny(self, principal: Principal, tenant: str, reason: str, detail: dict) -> None:
        """One audit row per attempt: repeats of the same denial within DENIAL_REPEAT_S are not recorded again."""
        target = str(detail.get("conversation") or detail.get("message") or detail.get("element"))
        key = (principal.subject, target, str(detail.get("action")))
        now = time.monotonic()
        with self._denied_lock:
            last = self._denied.get(key)
            if last is not None and now - last < DENIAL_REPEAT_S:
                return
            self._denied[key] = now
            if len(self._denied) > 10_000:  # forget what is past the window
                self._denied = {k: t for k, t in self._denied.items() if now - t < DENIAL_REPEAT_S}
        self.audit.record("denied", subject=principal.subject, tenant=tenant, route="chat:conversation",
                          ip=client_ip.get(), status=404, reason=reason, detail=detail)

    # -- what users thought of the answers (for the people who improve the prompts) -----------------------------

    def feedback_report(self, principal: Principal, tenant: str, *, assistant: str | None = None,
                        value: int | None = None, limit: int = 50) -> dict:
        """Counts per assistant and prompt version, and the latest rated answers with their question and the
        user's comment. A rating shares that one exchange with the tenant's prompt editors (README); who rated
        is not shown. Only answers of a prompt version count: a rating under a refusal or a status message (no
        model turn of this tenant behind it) says nothing about a prompt."""
        self.access.check(principal, tenant, "prompts:write", route="feedback:report", ip=client_ip.get())
        with self.db.session() as session:
            counts = repo.feedback_summary(session=session, tenant=tenant, assistant=assistant)
            rated = repo.rated_steps(session=session, tenant=tenant, assistant=assistant, value=value,
                                     limit=max(1, min(limit, 200)))
        summary: dict[tuple[str, int | None], dict] = {}
        for name, version, rating, n in counts:
            row = summary.setdefault((name, version), {"assistant": name, "prompt_version": version,
                                                       "helpful": 0, "not_helpful": 0})
            row["helpful" if rating == 1 else "not_helpful"] += int(n)
        items = [{"at": _utc(step.created_at).isoformat(), "assistant": conv.assistant, "label": conv.label,
                  "prompt_version": turn.prompt_version if turn else None, "model": turn.model if turn else None,
                  "turn_id": turn.id if turn else None,  # POST .../evals/{assistant}/cases/from-feedback takes it
                  "value": step.feedback_value, "comment": step.feedback_comment,
                  "question": _clip_text(question, FEEDBACK_TEXT_CHARS),
                  "answer": step.output}
                 for step, conv, turn, question in rated]
        order = sorted(summary.values(), key=lambda r: (r["assistant"], -(r["prompt_version"] or 0)))
        return {"tenant": tenant, "summary": order, "items": items}

    # -- titles ------------------------------------------------------------------------------------------------------

    async def write_title(self, principal: Principal, conversation_id: str, *, question: str,
                          answer: str) -> str | None:
        """After the first answer: a short title by the internal tier, or None (the first message stays)."""
        row = self._owned(principal, conversation_id, action="title")
        if row is None or row.title_source == "user":
            return None
        config = self.registry.get(row.tenant)
        allowed = config.model_policy.allowed_tiers if config else []
        if self.chat.llm.internal_model_tier(allowed, self.titles) is None:
            return None
        try:
            result = await self.chat.internal(principal, row.tenant, task=TITLE_TASK,
                                              messages=title_messages(question, answer),
                                              max_tokens=24, assistant=row.assistant)
        except Exception as exc:  # a provider error or a quota refusal leaves the first message as the title
            log.warning("conversation title failed", extra={
                "reason": exc.code if isinstance(exc, AtriumError) else type(exc).__name__})
            return None
        title = clean_title(result.answer)
        if not title:
            return None
        self.rename(principal, conversation_id, title, source="model")
        return title


def title_messages(question: str, answer: str) -> list[dict[str, str]]:
    """What the internal tier is asked for a title (bench/routing/conversations.py prices the same call)."""
    return [{"role": "system", "content": TITLE_SYSTEM},
            {"role": "user", "content": f"Question: {question[:_CLIP]}\n\nAnswer: {answer[:_CLIP]}"}]


def clean_title(text: str) -> str:
    """The title from a model's reply: first non-empty line, without label, quotes, markdown or final dot."""
    for line in (text or "").splitlines():
        line = _TITLE_LABEL.sub("", line.strip(_TITLE_WRAP)).strip(_TITLE_WRAP + ".")
        if line:
            return _clip_title(line)
    return ""


def files_title(filenames: list[str]) -> str:
    """"Uploaded pricing-2027.pdf", "Uploaded a.pdf and b.docx", "Uploaded a.pdf and 3 more files"."""
    names = [" ".join(n.split()) for n in filenames if n and n.strip()]
    if not names:
        return ""
    if len(names) == 1:
        text = names[0]
    elif len(names) == 2:
        text = f"{names[0]} and {names[1]}"
    else:
        text = f"{names[0]} and {len(names) - 1} more files"
    return _clip_title(f"Uploaded {text}")


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands back naive datetimes, written in UTC


def _clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def _clip_title(title: str) -> str:
    title = " ".join((title or "").split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"
