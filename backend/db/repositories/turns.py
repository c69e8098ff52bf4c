"""Chat turn records (who, tenant, assistant, prompt version, model, tokens, cost, outcome)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from backend.db.models import ChatTurn


def record_turn(*, session: Session, turn: ChatTurn) -> ChatTurn:
    session.add(turn)
    session.commit()
    session.refresh(turn)
    return turn


def list_turns(*, session: Session, tenant: str, limit: int = 100) -> list[ChatTurn]:
    stmt = (
        select(ChatTurn).where(ChatTurn.tenant == tenant).order_by(col(ChatTurn.id).desc()).limit(limit)
    )
    return list(session.exec(stmt))
