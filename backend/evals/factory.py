"""The evaluation service, built from the app's services (container.py) once they exist; the demo sets seeded."""

from __future__ import annotations

import logging
from typing import Any

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
        if n := evals.seed(settings.evals_dir, tenants):
            log.info("demo test cases seeded", extra={"sets": n, "source": str(settings.evals_dir)})
    return evals
