"""Code run in separate processes (multiprocessing, spawn): replicas sharing one prompt store (a folder, or a
database: `spec` is ("files", folder) or ("sql", URL), see tests/prompts/conftest.store_spec)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def open_store(spec: tuple[str, str] | str) -> Any:
    """The store a replica opens: a bare path is a prompts folder."""
    from backend.prompts.sql_store import SqlPromptStore
    from backend.prompts.store import PromptStore

    kind, where = spec if isinstance(spec, tuple | list) else ("files", spec)
    if kind == "files":
        return PromptStore(Path(where))
    from backend.db.engine import Database, make_engine

    return SqlPromptStore(Database(make_engine(where)))


def store_save(spec, barrier, base: int, tag: str, results) -> None:
    """Save a version on `base` with the store directly, after every process reached the barrier."""
    from backend.prompts.store import VersionConflict

    store = open_store(spec)
    current = store.get("sales", "sales-assistant", 1)
    barrier.wait()
    try:
        pv, _ = store.create_version("sales", "sales-assistant", body=current.body + f"\n{tag}\n",
                                     config=current.config, message=tag, author=tag, base_version=base)
        results.put((tag, "ok", pv.version))
    except VersionConflict as exc:
        results.put((tag, "conflict", exc.latest))


def store_move_labels(spec, barrier, label: str, versions: list[int], who: str, results) -> None:
    store = open_store(spec)
    barrier.wait()
    for v in versions:
        store.move_label("sales", "sales-assistant", label, v, who=who)
    results.put((who, "done", len(versions)))


def api_save(root: str, data_dir: str, barrier, tag: str, results) -> None:
    """A whole app replica (FastAPI, real HTTP handling via TestClient) saving on base_version 1."""
    os.environ["CHAINLIT_AUTH_SECRET"] = "replica-secret-" + "y" * 40
    from fastapi.testclient import TestClient

    from app import create_app
    from backend.settings import Settings
    from tests.conftest import session_cookie_for

    app = create_app(Settings(ATRIUM_DATA_DIR=data_dir, ATRIUM_PROMPTS_DIR=root), mount_chat=False)
    with TestClient(app) as client:
        client.cookies.update(session_cookie_for("bob"))
        base = client.get("/api/t/sales/prompts/sales-assistant/versions/1").json()
        barrier.wait()
        r = client.post("/api/t/sales/prompts/sales-assistant/versions", json={
            "body": base["body"] + f"\n{tag}\n", "config": base["config"], "message": tag, "base_version": 1})
        results.put((tag, r.status_code, r.json()))


def seed(url: str, root: str, barrier, results) -> None:
    """A replica starting on an empty database: seed it from the prompts folder (exchange.seed_database)."""
    from backend.prompts.exchange import seed_database

    store = open_store(("sql", url))
    barrier.wait()
    results.put(seed_database(store, Path(root)))
