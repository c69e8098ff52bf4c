"""A run, case by case, through the same pipeline users get (ChatService: retrieval, the prompt version or draft,
the model, citations; quotas, usage rows of channel `eval` under the member who runs it).

Each case's result is committed as soon as it is checked, with the run's totals: a run stopped anywhere (a
quota refusal, a model failure, the process killed) keeps what it did, and resuming it answers only the cases
without a result. The run is claimed by this process (its owner id, governance/leases.py) while it works on it:
another process may take it over only once this one's heartbeat has stopped.

Cancelling is a status in the database (`cancelled`, set by whichever process the request reached): the runner
reads the run before each case and stops when it is no longer running for this process — the case in progress is
answered, checked and kept (it was paid for), no other one is started. The run's end state is written only while
it is still this process's, so a cancel (or another process's take-over) is never overwritten.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from backend.auth.principal import Principal
from backend.chat.pipeline import ChatService
from backend.chat.types import ChatRequest, TurnResult
from backend.db.engine import Database
from backend.db.models import EvalCase, EvalResult, EvalRun, utcnow
from backend.db.repositories import evals as repo
from backend.errors import AtriumError, Conflict, NotFound
from backend.evals.cases import snapshot
from backend.evals.checks import Answered, run_checks, verdict
from backend.prompts.service import PromptService

log = logging.getLogger("atrium.evals")
CHANNEL = "eval"


class Knowledge(Protocol):
    def document_titles(self, tenant: str, ids: set[str]) -> dict[str, Any]: ...


class Judge(Protocol):
    """An optional model that grades facts and groundedness (evals/judge.py)."""

    def name(self, tenant_allowed: list[str]) -> str | None: ...

    async def grade(self, principal: Principal, tenant: str, assistant: str, case: dict[str, Any],
                    answered: Answered, checks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]: ...


def citation_public(c: Any, filenames: dict[str, str]) -> dict[str, Any]:
    return {"title": c.title, "document_id": c.document_id, "filename": filenames.get(c.document_id),
            "page": c.page, "section": c.section, "quote": c.quote[:600], "score": round(float(c.score), 4)}


def totals(results: list[EvalResult]) -> dict[str, Any]:
    """The run's counters from its results (recomputed, so a resumed run's totals are right whatever happened)."""
    latencies = [r.latency_ms for r in results]
    models = sorted({r.model for r in results if r.model})
    return {"done": len(results), "passed": sum(1 for r in results if r.passed),
            "score": round(sum(1 for r in results if r.passed) / len(results), 4) if results else None,
            "tokens": sum(r.tokens for r in results), "cost_usd": round(sum(r.cost_usd for r in results), 6),
            "latency_ms": int(statistics.median(latencies)) if latencies else None,
            "model": ", ".join(models) or None}


class EvalRunner:
    def __init__(self, *, db: Database, chat: ChatService, prompts: PromptService, knowledge: Knowledge | None,
                 embed: Callable[[list[str]], list[list[float]]] | None, owner: str, lease_s: float,
                 judge: Judge | None = None) -> None:
        self.db = db
        self.chat = chat
        self.prompts = prompts
        self.knowledge = knowledge
        self.embed = embed
        self.owner = owner
        self.lease_s = lease_s
        self.judge = judge

    def claim(self, tenant: str, run_id: str, *, new: bool = False) -> None:
        """Take the run for this process (Conflict when another live process works on it, or it is finished; for
        a `new` run's first claim, also when it was cancelled before it started)."""
        with self.db.session() as session:
            run = repo.get_run(session=session, tenant=tenant, run_id=run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}", code="run_not_found")
            if run.status == "finished":
                raise Conflict(f"run {run_id} is finished: start a new run", code="run_finished")
            if new and run.status == "cancelled":
                raise Conflict(f"run {run_id} was cancelled before it started", code="run_cancelled")
            if not repo.claim_run(session=session, tenant=tenant, run_id=run_id, owner=self.owner,
                                  lease_s=self.lease_s, statuses=("queued",) if new else repo.RESUMABLE):
                raise Conflict(f"run {run_id} is running in another process; it can be resumed once that one has "
                               f"stopped", code="run_in_progress")

    async def execute(self, principal: Principal, tenant: str, run_id: str, *,
                      progress: Callable[[EvalRun], None] | None = None) -> EvalRun:
        """Answer and check every case of a claimed run that has no result yet; the run as it ended (finished, or
        failed with the reason: resume it later)."""
        try:
            run = self._load(tenant, run_id)
            trial = self.prompts.trial(principal, tenant, run.assistant, version=run.prompt_version,
                                       body=(run.draft or {}).get("body") if run.draft else None,
                                       config=(run.draft or {}).get("config") or {})
            with self.db.session() as session:
                cases = {c.id: c for c in repo.list_cases(session=session, tenant=tenant, assistant=run.assistant)}
                done = repo.done_case_ids(session=session, tenant=tenant, run_id=run_id)
            for case_id in run.case_ids:
                if case_id in done:
                    continue
                case = cases.get(case_id)
                if case is None:  # deleted since the run started: nothing to evaluate
                    continue
                now = self._load(tenant, run_id)
                if now.status != "running" or now.owner != self.owner:  # cancelled, or taken over elsewhere
                    log.info("evaluation run stopped before its next case",
                             extra={"tenant": tenant, "run": run_id, "status": now.status})
                    return self._finish(tenant, run_id, status=now.status, error=now.error)
                result = await self._case(principal, tenant, run, trial.prompt, case)
                run = self._save(tenant, run_id, result)
                if progress is not None:
                    progress(run)
            return self._finish(tenant, run_id, status="finished", error=None)
        except AtriumError as exc:  # a quota, a revoked permission, a failing model: resumable later
            log.warning("evaluation run stopped", extra={"tenant": tenant, "run": run_id, "error": exc.message})
            return self._finish(tenant, run_id, status="failed", error=f"{exc.code}: {exc.message}")
        except (asyncio.CancelledError, GeneratorExit):
            self._finish(tenant, run_id, status="failed", error="interrupted: the process stopped; resume the run")
            raise
        except Exception as exc:
            log.exception("evaluation run failed", extra={"tenant": tenant, "run": run_id})
            return self._finish(tenant, run_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:500])

    def _load(self, tenant: str, run_id: str) -> EvalRun:
        with self.db.session() as session:
            run = repo.get_run(session=session, tenant=tenant, run_id=run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}", code="run_not_found")
        return run

    async def _case(self, principal: Principal, tenant: str, run: EvalRun, prompt: Any,
                    case: EvalCase) -> EvalResult:
        began = time.perf_counter()
        answer: TurnResult = await self.chat.run(principal, ChatRequest(
            tenant=tenant, assistant=run.assistant, message=case.question, history=list(case.history),
            channel=CHANNEL, tier=run.tier, prompt_override=prompt, stream=False))
        latency = answer.latency_ms or int((time.perf_counter() - began) * 1000)
        ids = {c.document_id for c in answer.citations}
        docs = self.knowledge.document_titles(tenant, ids) if self.knowledge is not None and ids else {}
        filenames = {i: d.filename for i, d in docs.items()}
        answered = Answered(answer=answer.answer, citations=answer.citations, filenames=filenames,
                            grounding=answer.grounding, route_reason=answer.route_reason)
        frozen = snapshot(case)
        checks, passed = await asyncio.to_thread(run_checks, frozen, answered, self.embed)
        if self.judge is not None and run.judge:
            checks = await self.judge.grade(principal, tenant, run.assistant, frozen, answered, checks)
            passed = verdict(checks)
        return EvalResult(run_id=run.id, case_id=case.id, tenant=tenant, case=frozen, answer=answer.answer,
                          citations=[citation_public(c, filenames) for c in answer.citations], checks=checks,
                          passed=passed, model=answer.model or None,
                          tokens=answer.prompt_tokens + answer.completion_tokens, cost_usd=answer.cost_usd,
                          latency_ms=latency, turn_id=answer.turn_id)

    def _save(self, tenant: str, run_id: str, result: EvalResult) -> EvalRun:
        with self.db.session() as session:
            try:
                repo.add_result(session=session, tenant=tenant, result=result)
            except IntegrityError:
                # The process that resumed this run (after a cancel) answered the case too: the first result stays.
                session.rollback()
            results = repo.list_results(session=session, tenant=tenant, run_id=run_id)
            repo.update_run(session=session, tenant=tenant, run_id=run_id, values=totals(results))
            session.commit()
            run = repo.get_run(session=session, tenant=tenant, run_id=run_id)
        assert run is not None
        return run

    def _finish(self, tenant: str, run_id: str, *, status: str, error: str | None) -> EvalRun:
        """The totals from the results, always; the end state only while the run is still this process's."""
        with self.db.session() as session:
            results = repo.list_results(session=session, tenant=tenant, run_id=run_id)
            repo.update_run(session=session, tenant=tenant, run_id=run_id, values=totals(results))
            values: dict[str, Any] = {"status": status, "error": error}
            if status == "finished":
                values["finished_at"] = utcnow()
            repo.finish_run(session=session, tenant=tenant, run_id=run_id, owner=self.owner, values=values)
            session.commit()
            run = repo.get_run(session=session, tenant=tenant, run_id=run_id)
        assert run is not None
        return run

