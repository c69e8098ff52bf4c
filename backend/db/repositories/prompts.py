"""Prompt versions, labels and label history in SQL (backend/prompts/sql_store.py decides the transactions).
Every function is filtered by tenant, except the three that enumerate or seed the whole store (named below)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from backend.db.models import PromptLabelMoveRow, PromptLabelRow, PromptSeedRow, PromptVersionRow


def version_numbers(*, session: Session, tenant: str, assistant: str) -> list[int]:
    rows = session.execute(select(PromptVersionRow.version)
                           .where(col(PromptVersionRow.tenant) == tenant, col(PromptVersionRow.assistant) == assistant)
                           .order_by(col(PromptVersionRow.version)))
    return [r[0] for r in rows]


def version_text(*, session: Session, tenant: str, assistant: str, version: int) -> str | None:
    return session.execute(select(PromptVersionRow.text).where(
        col(PromptVersionRow.tenant) == tenant, col(PromptVersionRow.assistant) == assistant,
        col(PromptVersionRow.version) == version)).scalar_one_or_none()


def add_version(*, session: Session, tenant: str, assistant: str, version: int, text: str,
                author: str | None) -> None:
    """Flushed, not committed: IntegrityError when the number is taken (the unique key decides, not a check)."""
    session.add(PromptVersionRow(tenant=tenant, assistant=assistant, version=version, text=text, author=author))
    session.flush()


def assistant_names(*, session: Session, tenant: str) -> list[str]:
    versions = select(PromptVersionRow.assistant).where(col(PromptVersionRow.tenant) == tenant)
    labels = select(PromptLabelRow.assistant).where(col(PromptLabelRow.tenant) == tenant)
    return sorted({r[0] for r in session.execute(versions.union(labels))})


def labels(*, session: Session, tenant: str, assistant: str) -> dict[str, int]:
    rows = session.execute(select(PromptLabelRow.label, PromptLabelRow.version).where(
        col(PromptLabelRow.tenant) == tenant, col(PromptLabelRow.assistant) == assistant)
        .order_by(col(PromptLabelRow.label)))
    return {label: version for label, version in rows}


def label_history(*, session: Session, tenant: str, assistant: str) -> list[dict[str, Any]]:
    """Oldest first, as labels.yaml has it: {who, label, from, to, at}."""
    rows = session.execute(select(PromptLabelMoveRow).where(
        col(PromptLabelMoveRow.tenant) == tenant, col(PromptLabelMoveRow.assistant) == assistant)
        .order_by(col(PromptLabelMoveRow.id))).scalars()
    return [{"who": r.who, "label": r.label, "from": r.from_version, "to": r.to_version, "at": r.at} for r in rows]


def lock_label(*, session: Session, tenant: str, assistant: str, label: str) -> tuple[bool, int | None]:
    """(whether the label exists, its version), read after taking the label's write lock: a no-op UPDATE holds
    the row until commit on PostgreSQL and, as the transaction's first write, SQLite's database lock, so the
    version read here is the one the move replaces (two movers never both see the same `from`)."""
    where = (col(PromptLabelRow.tenant) == tenant, col(PromptLabelRow.assistant) == assistant,
             col(PromptLabelRow.label) == label)
    session.execute(update(PromptLabelRow).where(*where).values(version=PromptLabelRow.version))
    current = session.execute(select(PromptLabelRow.version).where(*where)).scalar_one_or_none()
    return current is not None, current


def set_label(*, session: Session, tenant: str, assistant: str, label: str, version: int, exists: bool) -> None:
    """Point the label (locked by lock_label) at `version`; a new label is inserted (IntegrityError when another
    transaction inserted it first: the caller starts again)."""
    if exists:
        session.execute(update(PromptLabelRow).where(
            col(PromptLabelRow.tenant) == tenant, col(PromptLabelRow.assistant) == assistant,
            col(PromptLabelRow.label) == label).values(version=version))
    else:
        session.add(PromptLabelRow(tenant=tenant, assistant=assistant, label=label, version=version))
    session.flush()


def add_label_move(*, session: Session, tenant: str, assistant: str, entry: dict[str, Any]) -> None:
    session.add(PromptLabelMoveRow(tenant=tenant, assistant=assistant, label=str(entry["label"]),
                                   from_version=entry.get("from"), to_version=int(entry["to"]),
                                   who=entry.get("who"), at=str(entry.get("at") or "")))
    session.flush()


def prompt_tenants(*, session: Session) -> list[str]:
    """Every tenant with prompts (export and seeding see the whole store)."""
    versions = select(PromptVersionRow.tenant)
    return sorted({r[0] for r in session.execute(versions.union(select(PromptLabelRow.tenant)))})


def any_version(*, session: Session) -> bool:
    return bool(session.execute(select(func.count()).select_from(PromptVersionRow)).scalar_one())


def claim_seed(*, session: Session, name: str, source: str) -> None:
    """Flushed, not committed: IntegrityError when another transaction claimed `name` (on PostgreSQL after
    waiting for it to commit; on SQLite the database lock serialises the two)."""
    session.add(PromptSeedRow(name=name, source=source))
    session.flush()
