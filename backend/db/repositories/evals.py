"""Evaluation cases, runs and results in SQL (backend/evals/ decides what they mean). Every function is filtered by
tenant, except the ones that look at the whole store (named in tests/db/test_evals_repository.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlmodel import Session, col

from backend.db.models import (
    ChatTurn,
    Conversation,
    ConversationStep,
    EvalCase,
    EvalResult,
    EvalRun,
    ProcessLease,
    utcnow,
)
from backend.db.repositories.turns import db_epoch

# -- cases -----------------------------------------------------------------------------------------------------


def list_cases(*, session: Session, tenant: str, assistant: str) -> list[EvalCase]:
    return list(session.exec(select(EvalCase).where(col(EvalCase.tenant) == tenant,
                                                    col(EvalCase.assistant) == assistant)
                             .order_by(col(EvalCase.created_at), col(EvalCase.id))).scalars())


def get_case(*, session: Session, tenant: str, assistant: str, case_id: str) -> EvalCase | None:
    return session.exec(select(EvalCase).where(col(EvalCase.tenant) == tenant, col(EvalCase.assistant) == assistant,
                                               col(EvalCase.id) == case_id)).scalars().first()


def add_case(*, session: Session, tenant: str, case: EvalCase) -> EvalCase:
    """Flushed, not committed. The row is the tenant's whatever `case.tenant` said."""
    case.tenant = tenant
    session.add(case)
    session.flush()
    return case


def update_case(*, session: Session, tenant: str, assistant: str, case_id: str,
                values: dict[str, Any]) -> EvalCase | None:
    row = get_case(session=session, tenant=tenant, assistant=assistant, case_id=case_id)
    if row is None:
        return None
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row


def delete_case(*, session: Session, tenant: str, assistant: str, case_id: str) -> bool:
    result = session.execute(delete(EvalCase).where(col(EvalCase.tenant) == tenant,
                                                    col(EvalCase.assistant) == assistant,
                                                    col(EvalCase.id) == case_id))
    return bool(result.rowcount)


def count_cases(*, session: Session, tenant: str, assistant: str) -> int:
    return int(session.execute(select(func.count()).select_from(EvalCase).where(
        col(EvalCase.tenant) == tenant, col(EvalCase.assistant) == assistant)).scalar_one())


# -- runs ------------------------------------------------------------------------------------------------------


def add_run(*, session: Session, tenant: str, run: EvalRun) -> EvalRun:
    run.tenant = tenant
    session.add(run)
    session.flush()
    return run


def get_run(*, session: Session, tenant: str, run_id: str, assistant: str | None = None) -> EvalRun | None:
    stmt = select(EvalRun).where(col(EvalRun.tenant) == tenant, col(EvalRun.id) == run_id)
    if assistant is not None:
        stmt = stmt.where(col(EvalRun.assistant) == assistant)
    return session.exec(stmt).scalars().first()


def list_runs(*, session: Session, tenant: str, assistant: str, limit: int = 50,
              prompt_version: int | None = None, status: str | None = None) -> list[EvalRun]:
    """Newest first; `prompt_version` / `status` narrow it (the release gate looks for a version's finished runs)."""
    stmt = select(EvalRun).where(col(EvalRun.tenant) == tenant, col(EvalRun.assistant) == assistant)
    if prompt_version is not None:
        stmt = stmt.where(col(EvalRun.prompt_version) == prompt_version)
    if status is not None:
        stmt = stmt.where(col(EvalRun.status) == status)
    return list(session.exec(stmt.order_by(col(EvalRun.created_at).desc(), col(EvalRun.id)).limit(limit)).scalars())


def update_run(*, session: Session, tenant: str, run_id: str, values: dict[str, Any]) -> None:
    session.execute(update(EvalRun).where(col(EvalRun.tenant) == tenant, col(EvalRun.id) == run_id).values(**values))


RESUMABLE = ("queued", "failed", "cancelled")


def claim_run(*, session: Session, tenant: str, run_id: str, owner: str, lease_s: float,
              statuses: tuple[str, ...] = RESUMABLE) -> bool:
    """Take the run for `owner` to work on: a run in one of `statuses` (a new run's first claim: only `queued`, so
    that one cancelled before it started stays so), or running for a process that is no longer live (one UPDATE:
    two processes resuming it at once never both get it). Committed."""
    live = select(ProcessLease.owner).where(ProcessLease.beat >= db_epoch(session) - lease_s)
    table = EvalRun.__table__
    free = or_(col(EvalRun.status).in_(statuses),
               (col(EvalRun.status) == "running") & or_(col(EvalRun.owner).is_(None), col(EvalRun.owner).not_in(live),
                                                        col(EvalRun.owner) == owner))
    result = session.execute(update(table).where(table.c.tenant == tenant, table.c.id == run_id, free)
                             .values(status="running", owner=owner, error=None, finished_at=None))
    session.commit()
    return bool(result.rowcount)


def cancel_run(*, session: Session, tenant: str, run_id: str, error: str) -> bool:
    """Mark a queued or running run `cancelled` (one UPDATE: whoever runs it, in this process or another, reads it
    before its next case and stops). False when it is in no such state. Committed."""
    table = EvalRun.__table__
    result = session.execute(update(table).where(table.c.tenant == tenant, table.c.id == run_id,
                                                 table.c.status.in_(("queued", "running")))
                             .values(status="cancelled", error=error))
    session.commit()
    return bool(result.rowcount)


def finish_run(*, session: Session, tenant: str, run_id: str, owner: str, values: dict[str, Any]) -> bool:
    """Set a run's end state (`values`: its status, error...) only while `owner` still runs it: a run cancelled
    meanwhile, or taken over by another process, keeps what they made of it. Flushed, not committed."""
    table = EvalRun.__table__
    result = session.execute(update(table).where(table.c.tenant == tenant, table.c.id == run_id,
                                                 table.c.status == "running", table.c.owner == owner)
                             .values(**values))
    return bool(result.rowcount)


def run_tenant(*, session: Session, run_id: str) -> str | None:
    """Which tenant has a run of this id, if any: a 404 for an id that is another tenant's is audited (a leak or
    a guess). Looks at the whole store on purpose; returns only the tenant's id."""
    return session.execute(select(EvalRun.tenant).where(col(EvalRun.id) == run_id)).scalars().first()


def owner_alive(*, session: Session, owner: str | None, lease_s: float) -> bool:
    """Whether the process `owner` beat within a lease (not tenant data: the platform's own heartbeats)."""
    if not owner:
        return False
    return session.execute(select(func.count()).select_from(ProcessLease).where(
        ProcessLease.owner == owner, ProcessLease.beat >= db_epoch(session) - lease_s)).scalar_one() > 0


# -- results ---------------------------------------------------------------------------------------------------


def add_result(*, session: Session, tenant: str, result: EvalResult) -> EvalResult:
    """Flushed, not committed: IntegrityError when the run already has this case's result."""
    result.tenant = tenant
    session.add(result)
    session.flush()
    return result


def list_results(*, session: Session, tenant: str, run_id: str) -> list[EvalResult]:
    return list(session.exec(select(EvalResult).where(col(EvalResult.tenant) == tenant,
                                                      col(EvalResult.run_id) == run_id)
                             .order_by(col(EvalResult.id))).scalars())


def done_case_ids(*, session: Session, tenant: str, run_id: str) -> set[str]:
    return {r[0] for r in session.execute(select(EvalResult.case_id).where(col(EvalResult.tenant) == tenant,
                                                                         col(EvalResult.run_id) == run_id))}


# -- a rated exchange, for a case made from feedback -------------------------------------------------------------


def rated_exchange(*, session: Session, tenant: str, turn_id: int) -> dict[str, Any] | None:
    """The exchange whose answer was turn `turn_id` of `tenant`: its assistant, the question, the earlier turns of
    the conversation (oldest first), the answer and the rating; None when the turn is not the tenant's or has no
    answer message in a conversation (a REST or studio turn)."""
    turn = session.exec(select(ChatTurn).where(col(ChatTurn.id) == turn_id, col(ChatTurn.tenant) == tenant)
                        ).scalars().first()
    if turn is None:
        return None
    answer = session.exec(select(ConversationStep).where(
        col(ConversationStep.tenant) == tenant, col(ConversationStep.turn_id) == turn_id,
        col(ConversationStep.type) == "assistant_message")).scalars().first()
    if answer is None:
        return None
    conversation = session.exec(select(Conversation).where(col(Conversation.id) == answer.conversation_id,
                                                           col(Conversation.tenant) == tenant)).scalars().first()
    if conversation is None:
        return None
    steps = list(session.exec(select(ConversationStep).where(
        col(ConversationStep.conversation_id) == answer.conversation_id, col(ConversationStep.tenant) == tenant,
        col(ConversationStep.type).in_(("user_message", "assistant_message")),
        col(ConversationStep.created_at) <= answer.created_at).order_by(col(ConversationStep.created_at))).scalars())
    earlier = [s for s in steps if s.id != answer.id]
    question_at = max((i for i, s in enumerate(earlier) if s.type == "user_message"), default=None)
    if question_at is None:
        return None
    rating = answer.feedback_value
    comment = answer.feedback_comment
    if rating is None and answer.parent_id:  # Chainlit rates the run the answer belongs to
        run = session.exec(select(ConversationStep).where(col(ConversationStep.id) == answer.parent_id,
                                                          col(ConversationStep.tenant) == tenant)).scalars().first()
        if run is not None:
            rating, comment = run.feedback_value, run.feedback_comment
    history = [{"role": "user" if s.type == "user_message" else "assistant", "content": s.output}
               for s in earlier[:question_at]]
    return {"assistant": conversation.assistant, "question": earlier[question_at].output, "history": history,
            "answer": answer.output, "rating": rating, "comment": comment, "prompt_version": turn.prompt_version}
