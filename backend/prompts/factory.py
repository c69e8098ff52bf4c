"""Which prompt store this process uses (ATRIUM_PROMPT_STORE, else the database when DATABASE_URL is
PostgreSQL, else files), and the start-up seeding of an empty database from ATRIUM_PROMPTS_DIR."""

from __future__ import annotations

import logging

from backend.db.engine import Database
from backend.prompts.contract import PromptStorage
from backend.prompts.exchange import seed_database
from backend.prompts.sql_store import SqlPromptStore
from backend.prompts.store import PromptStore
from backend.settings import Settings

log = logging.getLogger("atrium")


def build_prompt_store(settings: Settings, db: Database, *, seed: bool = True) -> PromptStorage:
    if settings.prompt_store_kind == "files":
        return PromptStore(settings.prompts_dir)
    store = SqlPromptStore(db)
    if seed and seed_database(store, settings.prompts_dir):
        log.info("prompt versions seeded into the database", extra={"source": str(settings.prompts_dir)})
    return store
