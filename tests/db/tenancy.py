"""What the repository tests compare: every row a tenant owns, before and after a call made for another tenant,
and the check that a repository module's functions are all either tested for tenant isolation or listed, with
the reason, as not scoped to one tenant."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from sqlalchemy import select
from sqlmodel import SQLModel

import backend.db.models  # noqa: F401 - registers every table in SQLModel.metadata
from backend.db.engine import Database

A, B = "sales", "finance"  # tenant A owns the rows; calls are made for tenant B


def rows_of(db: Database, tenant: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of `tenant`: the tables with a tenant column, and the uploaded bytes of its documents."""
    tables = SQLModel.metadata.tables
    out: dict[str, list[dict[str, Any]]] = {}
    with db.engine.connect() as conn:
        for table in tables.values():
            if "tenant" in table.c:
                rows = conn.execute(select(table).where(table.c.tenant == tenant)).mappings().all()
                out[table.name] = sorted((dict(r) for r in rows), key=repr)
        docs, blobs = tables["kb_document"], tables["kb_blob"]
        owned = select(docs.c.id).where(docs.c.tenant == tenant)
        rows = conn.execute(select(blobs).where(blobs.c.document_id.in_(owned))).mappings().all()
        out["kb_blob"] = sorted((dict(r) for r in rows), key=repr)
    return out


def repository_functions(module: ModuleType) -> set[str]:
    return {name for name, fn in inspect.getmembers(module, inspect.isfunction)
            if fn.__module__ == module.__name__ and not name.startswith("_")}


def assert_all_covered(module: ModuleType, tested: set[str], unscoped: dict[str, str]) -> None:
    """A new repository function fails this until it gets its isolation test, or its reason in `unscoped`."""
    functions = repository_functions(module)
    missing = functions - tested - set(unscoped)
    assert not missing, f"{module.__name__}: no tenant isolation test for {sorted(missing)}"
    gone = (tested | set(unscoped)) - functions
    assert not gone, f"{module.__name__}: listed but gone: {sorted(gone)}"
