"""The evaluation service, built from the app's services (container.py) once they exist; the demo sets seeded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from backend.db.repositories.prompts import claim_seed
from backend.evals.judge import ModelJudge
from backend.evals.runner import EvalRunner
from backend.evals.service import EvalService
from backend.settings import Settings

log = logging.getLogger("atrium.evals")


def build_evals(settings: Settings, services: Any, *, owner: str, seed: bool = True) -> EvalService:
    """`services`: container.Services (its chat, prompt service, knowledge base, audit log). The checks embed with
    the knowledge base's embedder (the chat's grounding check uses the same one: no other model is loaded)."""
    knowledge = services.knowledge
    embedder = getattr(getattr(knowledge, "retrieval", None), "embedder", None)
    runner = EvalRunner(db=services.db, chat=services.chat, prompts=services.prompt_service, knowledge=knowledge,
                        embed=embedder.embed if embedder is not None else None, owner=owner,
                        lease_s=settings.lease_s, judge=ModelJudge(chat=services.chat))
    evals = EvalService(db=services.db, prompts=services.prompt_service, runner=runner, audit=services.audit,
                        kb_version=knowledge.kb_fingerprint if knowledge is not None else None)
    if seed:
        tenants = [(t.id, [a.name for a in t.assistants]) for t in services.registry.all()]
        if n := seed_sets(evals, settings.evals_dir, tenants):
            log.info("demo test cases seeded", extra={"sets": n, "source": str(settings.evals_dir)})
    return evals


def seed_sets(evals: EvalService, folder: Path, tenants: list[tuple[str, list[str]]]) -> int:
    """Each assistant's demo set (`folder/<tenant>/<assistant>.yaml`) imported once (a marker row per set, so a
    set someone emptied stays empty); returns how many sets were seeded."""
    seeded = 0
    for tenant, assistants in tenants:
        for assistant in assistants:
            path = folder / tenant / f"{assistant}.yaml"
            if not path.is_file():
                continue
            try:
                with evals.db.session() as session:
                    claim_seed(session=session, name=f"evals:{tenant}/{assistant}", source=str(path))
                    session.commit()
            except IntegrityError:
                continue  # seeded before (or by another replica starting at the same time)
            try:
                evals.import_yaml(None, tenant, assistant, path.read_text(encoding="utf-8"), route="seed")
                seeded += 1
            except Exception:  # a broken demo file must not stop the app: the log names it
                log.exception("could not seed the demo test cases", extra={"path": str(path)})
    return seeded
