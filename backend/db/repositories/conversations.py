"""Conversation rows. Every read and write names the owner and the tenants the owner may still see: a thread
whose tenant the owner has left is as invisible as another user's."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from backend.db.models import ChatTurn, ChatUser, Conversation, ConversationElement, ConversationStep, utcnow


def upsert_chat_user(*, session: Session, identifier: str, display_name: str | None, provider: str | None,
                     claims: dict) -> ChatUser:
    user = session.get(ChatUser, identifier)
    if user is None:
        user = ChatUser(identifier=identifier)
    user.display_name, user.provider, user.claims, user.updated_at = display_name, provider, claims, utcnow()
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def get_chat_user(*, session: Session, identifier: str) -> ChatUser | None:
    return session.get(ChatUser, identifier)


def get_conversation(*, session: Session, conversation_id: str) -> Conversation | None:
    """Unscoped on purpose: the service needs to tell "not yours" (audited) from "does not exist"."""
    return session.get(Conversation, conversation_id)


def create_conversation(*, session: Session, conversation: Conversation) -> Conversation | None:
    """None when the id is already taken (a concurrent create of the same thread)."""
    session.add(conversation)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    session.refresh(conversation)
    return conversation


def list_conversations(*, session: Session, subject: str, tenants: Collection[str], limit: int,
                       before: tuple[datetime, str] | None = None, search: str | None = None,
                       feedback: int | None = None) -> list[Conversation]:
    """Newest first; `before` = (updated_at, id) of the last row of the previous page. Only conversations in
    which the user sent something: a message is stored, or the first message named it (Chainlit names the
    thread, then tells the browser to reload the sidebar, before the message's own write may be done). A chat
    opened and left without a message is no history."""
    if not tenants:
        return []
    asked = select(ConversationStep.conversation_id).where(
        ConversationStep.type == "user_message", col(ConversationStep.tenant).in_(tenants))
    stmt = select(Conversation).where(Conversation.subject == subject, col(Conversation.tenant).in_(tenants),
                                      col(Conversation.deleted).is_(False),
                                      col(Conversation.title).is_not(None) | col(Conversation.id).in_(asked))
    if search:  # literal text: "%" and "_" are not wildcards
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        in_steps = select(ConversationStep.conversation_id).where(
            func.lower(ConversationStep.output).like(pattern, escape="\\"), col(ConversationStep.tenant).in_(tenants))
        stmt = stmt.where(func.lower(col(Conversation.title)).like(pattern, escape="\\")
                          | col(Conversation.id).in_(in_steps))
    if feedback is not None:
        rated = select(ConversationStep.conversation_id).where(ConversationStep.feedback_value == feedback)
        stmt = stmt.where(col(Conversation.id).in_(rated))
    if before is not None:
        at, last_id = before
        stmt = stmt.where((col(Conversation.updated_at) < at)
                          | ((col(Conversation.updated_at) == at) & (col(Conversation.id) < last_id)))
    stmt = stmt.order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc()).limit(limit)
    return list(session.exec(stmt))


def update_conversation(*, session: Session, conversation: Conversation, **changes: object) -> Conversation:
    for name, value in changes.items():
        setattr(conversation, name, value)
    conversation.updated_at = utcnow()
    session.add(conversation)
    session.commit()
    session.refresh(conversation)
    return conversation


def delete_conversation(*, session: Session, conversation_id: str, tenant: str) -> None:
    session.execute(delete(ConversationStep).where(col(ConversationStep.conversation_id) == conversation_id,
                                                   col(ConversationStep.tenant) == tenant))
    session.execute(delete(ConversationElement).where(col(ConversationElement.conversation_id) == conversation_id,
                                                      col(ConversationElement.tenant) == tenant))
    # The row stays as a tombstone (no title, no messages): a tab that still shows the conversation cannot
    # re-create it under the same id by sending a message.
    session.execute(update(Conversation).where(col(Conversation.id) == conversation_id,
                                               col(Conversation.tenant) == tenant)
                    .values(deleted=True, title=None, updated_at=utcnow()))
    session.commit()


def list_steps(*, session: Session, conversation_id: str, tenant: str) -> list[ConversationStep]:
    stmt = (select(ConversationStep)
            .where(ConversationStep.conversation_id == conversation_id, ConversationStep.tenant == tenant)
            .order_by(col(ConversationStep.created_at), col(ConversationStep.id)))
    return list(session.exec(stmt))


def get_step(*, session: Session, step_id: str) -> ConversationStep | None:
    return session.get(ConversationStep, step_id)


def save_step(*, session: Session, step: ConversationStep, subject: str) -> ConversationStep:
    """Insert or update (Chainlit sends a streamed message first empty, then complete). `subject`: whose
    conversation it is (an answer's turn must be theirs)."""
    existing = session.get(ConversationStep, step.id)
    if step.turn_id is not None:
        turn = session.get(ChatTurn, step.turn_id)
        if turn is None or turn.tenant != step.tenant or turn.subject != subject:
            raise ValueError("an answer's turn is a turn of this user in this tenant")
    if existing is not None:
        if existing.conversation_id != step.conversation_id or existing.tenant != step.tenant:
            raise ValueError("step id belongs to another conversation")
        if existing.type != step.type:  # a user message never becomes an answer, nor the reverse
            raise ValueError("step id belongs to another kind of message")
        if existing.type == "user_message" and existing.output != step.output:
            # What was asked stays what was asked: the answer (and its rating, read by the prompt editors) is
            # about it. (Editing messages is off; the browser re-sending an id with new text was not.)
            raise ValueError("a question is not rewritten after it was asked")
        existing.output, existing.name, existing.type = step.output, step.name, step.type
        existing.turn_id = step.turn_id if step.turn_id is not None else existing.turn_id
        step = existing
    fields = step.model_dump() if existing is None else None
    try:
        session.add(step)
        conversation = session.get(Conversation, step.conversation_id)  # flushes the insert
        if conversation is not None:
            conversation.updated_at = utcnow()
            session.add(conversation)
        session.commit()
    except IntegrityError:
        # Chainlit's create and update of one step can arrive together (each in a worker thread): both found no
        # row and the other's insert won. This one is then the update it is, checked as any update (never a lost
        # answer, nor an insert over another conversation's id).
        session.rollback()
        if fields is None:
            raise
        return save_step(session=session, step=ConversationStep(**fields), subject=subject)
    session.refresh(step)
    return step


def delete_step(*, session: Session, step_id: str, conversation_id: str, tenant: str) -> None:
    session.execute(delete(ConversationStep).where(col(ConversationStep.id) == step_id,
                                                   col(ConversationStep.tenant) == tenant))
    session.execute(delete(ConversationElement).where(col(ConversationElement.for_id) == step_id,
                                                      col(ConversationElement.conversation_id) == conversation_id,
                                                      col(ConversationElement.tenant) == tenant))
    session.commit()


def save_element(*, session: Session, element: ConversationElement) -> ConversationElement:
    """Insert or update; an id of another conversation's element is refused (ValueError), never overwritten."""
    existing = session.get(ConversationElement, element.id)
    if existing is not None:
        if existing.conversation_id != element.conversation_id or existing.tenant != element.tenant:
            raise ValueError("element id belongs to another conversation")
        existing.for_id, existing.name = element.for_id, element.name
        existing.display, existing.content = element.display, element.content
        element = existing
    session.add(element)
    session.commit()
    session.refresh(element)
    return element


def list_elements(*, session: Session, conversation_id: str, tenant: str) -> list[ConversationElement]:
    stmt = (select(ConversationElement)
            .where(ConversationElement.conversation_id == conversation_id, ConversationElement.tenant == tenant)
            .order_by(col(ConversationElement.created_at), col(ConversationElement.id)))
    return list(session.exec(stmt))


def get_element(*, session: Session, element_id: str, conversation_id: str, tenant: str) -> ConversationElement | None:
    element = session.get(ConversationElement, element_id)
    if element is None or element.conversation_id != conversation_id or element.tenant != tenant:
        return None
    return element


def delete_element(*, session: Session, element_id: str, conversation_id: str, tenant: str) -> None:
    session.execute(delete(ConversationElement).where(col(ConversationElement.id) == element_id,
                                                      col(ConversationElement.conversation_id) == conversation_id,
                                                      col(ConversationElement.tenant) == tenant))
    session.commit()


def set_feedback(*, session: Session, step: ConversationStep, value: int | None, comment: str | None) -> None:
    step.feedback_value, step.feedback_comment = value, comment
    session.add(step)
    session.commit()


def _answer_turns(tenant: str):
    """Ids of the tenant's chat turns of a prompt version: what makes a rated message an answer worth counting."""
    return select(ChatTurn.id).where(ChatTurn.tenant == tenant, col(ChatTurn.prompt_version).is_not(None))


def _rated_answers(tenant: str):
    """A rated step counts as prompt feedback when it is an answer of a prompt version, or the run (what the
    chat's thumbs rate) of one; a rating under a refusal or a status message (no turn behind it) does not."""
    answer = aliased(ConversationStep)
    run_of_answer = (select(answer.id)
                     .where(answer.parent_id == ConversationStep.id, answer.type == "assistant_message",
                            answer.tenant == tenant, col(answer.turn_id).in_(_answer_turns(tenant)))
                     .exists())
    return (((ConversationStep.type == "assistant_message") & col(ConversationStep.turn_id).in_(_answer_turns(tenant)))
            | ((ConversationStep.type == "run") & run_of_answer))


def feedback_summary(*, session: Session, tenant: str, assistant: str | None = None) -> list[tuple]:
    """(assistant, prompt_version, value, count) of the tenant's rated answers (a rated run counts with the
    turn of its answer)."""
    answer = aliased(ConversationStep)
    turn_id = func.coalesce(ConversationStep.turn_id, answer.turn_id)
    turn = (ChatTurn.id == turn_id) & (ChatTurn.tenant == ConversationStep.tenant)
    stmt = (select(Conversation.assistant, ChatTurn.prompt_version, ConversationStep.feedback_value,
                   func.count())
            .join(Conversation, Conversation.id == ConversationStep.conversation_id)
            .outerjoin(answer, (answer.parent_id == ConversationStep.id) & (answer.type == "assistant_message")
                       & (answer.tenant == tenant) & col(answer.turn_id).is_not(None))  # the answer, not a notice
            .join(ChatTurn, turn)
            .where(ConversationStep.tenant == tenant, Conversation.tenant == tenant,
                   col(ConversationStep.feedback_value).is_not(None), col(ChatTurn.prompt_version).is_not(None))
            .group_by(Conversation.assistant, ChatTurn.prompt_version, ConversationStep.feedback_value))
    if assistant:
        stmt = stmt.where(Conversation.assistant == assistant)
    return list(session.exec(stmt))


def rated_steps(*, session: Session, tenant: str, assistant: str | None = None, value: int | None = None,
                limit: int = 50) -> list[tuple[ConversationStep, Conversation, ChatTurn | None, str]]:
    """The latest rated answers: (answer step, conversation, its turn, the question it answered)."""
    stmt = (select(ConversationStep, Conversation)
            .join(Conversation, Conversation.id == ConversationStep.conversation_id)
            .where(ConversationStep.tenant == tenant, Conversation.tenant == tenant,
                   col(ConversationStep.feedback_value).is_not(None), _rated_answers(tenant))
            .order_by(col(ConversationStep.created_at).desc()).limit(limit))
    if assistant:
        stmt = stmt.where(Conversation.assistant == assistant)
    if value is not None:
        stmt = stmt.where(ConversationStep.feedback_value == value)
    out = []
    for step, conversation in session.exec(stmt).all():
        if step.type == "run":  # Chainlit rates the run: the answer is its message
            answer = session.exec(select(ConversationStep).where(
                ConversationStep.parent_id == step.id, ConversationStep.tenant == tenant,
                ConversationStep.type == "assistant_message")  # the answer (it has a turn), not an upload notice
                .order_by(col(ConversationStep.turn_id).is_(None), col(ConversationStep.created_at).desc())
            ).first()
            if answer is not None:
                answer.feedback_value, answer.feedback_comment = step.feedback_value, step.feedback_comment
                session.expunge(answer)  # a view for the report, never written back
                step = answer
        question = session.exec(
            select(ConversationStep.output)
            .where(ConversationStep.conversation_id == step.conversation_id, ConversationStep.tenant == tenant,
                   ConversationStep.type == "user_message", ConversationStep.created_at <= step.created_at)
            .order_by(col(ConversationStep.created_at).desc()).limit(1)).first()
        turn = session.get(ChatTurn, step.turn_id) if step.turn_id is not None else None
        if turn is not None and turn.tenant != tenant:
            turn = None
        out.append((step, conversation, turn, question or ""))
    return out
