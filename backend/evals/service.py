"""Evaluation of an assistant's prompt versions: its test cases (CRUD, YAML import and export, a case from a rated
exchange), runs over them (started, resumed, read back) and the comparison of two runs.

The /api/t/{tenant}/evals routes check prompts:write before these methods run; every write here is audited. Runs
work in the background of the process that started them (an asyncio task); the CLI runs them in the foreground.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from backend.auth.principal import Principal
from backend.db.engine import Database
from backend.db.models import EvalCase, EvalRun
from backend.db.repositories import evals as repo
from backend.errors import Conflict, Invalid, NotFound
from backend.evals import cases as case_format
from backend.evals import from_feedback
from backend.evals.cases import CaseCreate, checks_something, parse_yaml, public, values_of
from backend.evals.compare import compare_runs
from backend.evals.runner import EvalRunner
from backend.governance.audit import AuditLog
from backend.prompts.service import PromptService

log = logging.getLogger("atrium.evals")
MAX_CASES = case_format.MAX_CASES


def run_public(run: EvalRun, *, resumable: bool | None = None) -> dict[str, Any]:
    return {
        "id": run.id, "assistant": run.assistant, "prompt_version": run.prompt_version,
        "draft": run.draft, "tier": run.tier, "model": run.model, "kb_version": run.kb_version,
        "status": run.status, "total": run.total, "done": run.done, "passed": run.passed,
        "failed": run.done - run.passed, "score": run.score, "tokens": run.tokens, "cost_usd": run.cost_usd,
        "latency_ms": run.latency_ms, "judge": run.judge, "started_by": run.started_by,
        "skipped": run.skipped, "progress": round(run.done / run.total, 4) if run.total else 1.0,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": run.error, "resumable": resumable if resumable is not None else run.status in ("failed", "cancelled"),
    }


def result_public(r: Any) -> dict[str, Any]:
    return {"case_id": r.case_id, "question": (r.case or {}).get("question"), "case": r.case, "answer": r.answer,
            "citations": r.citations, "checks": r.checks, "passed": r.passed, "model": r.model, "tokens": r.tokens,
            "cost_usd": r.cost_usd, "latency_ms": r.latency_ms, "turn_id": r.turn_id}


class EvalService:
    def __init__(self, *, db: Database, prompts: PromptService, runner: EvalRunner, audit: AuditLog,
                 kb_version: Any = None) -> None:
        """`kb_version(tenant)`: the knowledge base's fingerprint."""
        self.db = db
        self.prompts = prompts
        self.runner = runner
        self.audit = audit
        self.kb_version = kb_version or (lambda tenant: "")
        self.tasks: dict[str, asyncio.Task] = {}  # runs this process is working on

    # -- cases ---------------------------------------------------------------------------------------------------

    def _assistant(self, tenant: str, assistant: str) -> None:
        self.prompts.assistant_tenant(tenant, assistant)  # NotFound naming the tenant's assistants

    def cases(self, tenant: str, assistant: str) -> list[dict[str, Any]]:
        self._assistant(tenant, assistant)
        with self.db.session() as session:
            return [public(c) for c in repo.list_cases(session=session, tenant=tenant, assistant=assistant)]

    def create_case(self, principal: Principal, tenant: str, assistant: str, data: CaseCreate, *, route: str,
                    source: dict[str, Any] | None = None) -> dict[str, Any]:
        self._assistant(tenant, assistant)
        with self.db.session() as session:
            if repo.count_cases(session=session, tenant=tenant, assistant=assistant) >= MAX_CASES:
                raise Invalid(f"{assistant} has {MAX_CASES} cases, the limit: delete some first", code="too_many_cases")
            row = repo.add_case(session=session, tenant=tenant, case=EvalCase(
                id=case_format.new_id(), tenant=tenant, assistant=assistant, source=source,
                created_by=principal.subject, **values_of(data)))
            session.commit()
        self.audit.record("eval_case_created", subject=principal.subject, tenant=tenant, route=route, status=201,
                          detail={"assistant": assistant, "case": row.id, "source": source})
        return public(row)

    def update_case(self, principal: Principal, tenant: str, assistant: str, case_id: str, data: CaseCreate, *,
                    route: str) -> dict[str, Any]:
        self._assistant(tenant, assistant)
        with self.db.session() as session:
            before = repo.get_case(session=session, tenant=tenant, assistant=assistant, case_id=case_id)
            if before is None:
                raise NotFound(f"{assistant} has no case {case_id!r}", code="case_not_found")
            old = case_format.snapshot(before)
            row = repo.update_case(session=session, tenant=tenant, assistant=assistant, case_id=case_id,
                                   values=values_of(data))
            session.commit()
        assert row is not None
        self.audit.record("eval_case_updated", subject=principal.subject, tenant=tenant, route=route, status=200,
                          detail={"assistant": assistant, "case": case_id, "before": old,
                                  "after": case_format.snapshot(row)})
        return public(row)

    def delete_case(self, principal: Principal, tenant: str, assistant: str, case_id: str, *, route: str) -> None:
        self._assistant(tenant, assistant)
        with self.db.session() as session:
            row = repo.get_case(session=session, tenant=tenant, assistant=assistant, case_id=case_id)
            if row is None:
                raise NotFound(f"{assistant} has no case {case_id!r}", code="case_not_found")
            repo.delete_case(session=session, tenant=tenant, assistant=assistant, case_id=case_id)
            session.commit()
        self.audit.record("eval_case_deleted", subject=principal.subject, tenant=tenant, route=route, status=200,
                          detail={"assistant": assistant, "case": case_id, "before": case_format.snapshot(row)})

    def export_yaml(self, tenant: str, assistant: str) -> str:
        self._assistant(tenant, assistant)
        with self.db.session() as session:
            return case_format.to_yaml(assistant, repo.list_cases(session=session, tenant=tenant, assistant=assistant))

    def import_yaml(self, principal: Principal | None, tenant: str, assistant: str, text: str, *,
                    route: str) -> dict[str, int]:
        """Cases with an id that the set has are updated (or unchanged), the others added; nothing is deleted.
        All or nothing: a file with one bad case imports none (the 422 lists every problem)."""
        self._assistant(tenant, assistant)
        parsed = parse_yaml(text, assistant=assistant)
        counts = {"added": 0, "updated": 0, "unchanged": 0}
        who = principal.subject if principal else "cli"
        with self.db.session() as session:
            existing = {c.id: c for c in repo.list_cases(session=session, tenant=tenant, assistant=assistant)}
            new = sum(1 for c in parsed if c.id is None or c.id not in existing)
            if len(existing) + new > MAX_CASES:
                raise Invalid(f"{assistant} would have {len(existing) + new} cases; the limit is {MAX_CASES}",
                              code="too_many_cases")
            for case in parsed:
                values = values_of(case)
                row = existing.get(case.id) if case.id else None
                if row is None:
                    repo.add_case(session=session, tenant=tenant, case=EvalCase(
                        id=case.id or case_format.new_id(), tenant=tenant, assistant=assistant, created_by=who,
                        **values))
                    counts["added"] += 1
                elif case_format.snapshot(row) == {"id": row.id, **values}:
                    counts["unchanged"] += 1
                else:
                    repo.update_case(session=session, tenant=tenant, assistant=assistant, case_id=row.id,
                                     values=values)
                    counts["updated"] += 1
            session.commit()
        if principal is not None:  # the demo sets seeded at start are configuration, not someone's change
            self.audit.record("eval_cases_imported", subject=who, tenant=tenant, route=route, status=200,
                              detail={"assistant": assistant, **counts})
        return counts

    def _rated(self, tenant: str, assistant: str, turn_id: int) -> dict[str, Any]:
        self._assistant(tenant, assistant)
        with self.db.session() as session:
            exchange = repo.rated_exchange(session=session, tenant=tenant, turn_id=turn_id)
        if exchange is None or exchange["assistant"] != assistant:
            raise NotFound(f"{assistant} has no chat answer {turn_id} to make a case of (the Feedback tab lists the "
                           f"rated ones)", code="turn_not_found")
        return exchange

    def draft_from_feedback(self, tenant: str, assistant: str, turn_id: int) -> dict[str, Any]:
        """The case a rated exchange of this assistant suggests (its question and earlier turns; the note says how
        it was rated), not stored: the editor says what a good answer states, and saving it is
        `case_from_feedback` — so a case is never left behind empty by an editor who looked and went away."""
        data = from_feedback.prefill(self._rated(tenant, assistant, turn_id))
        return {"id": None, "assistant": assistant, **data.model_dump(mode="json"), "checks_nothing": True,
                "source": from_feedback.source(turn_id), "stored": False}

    def case_from_feedback(self, principal: Principal, tenant: str, assistant: str, turn_id: int, *,
                           route: str, data: CaseCreate | None = None) -> dict[str, Any]:
        """Store a case made from a rated exchange of this assistant, recording where it came from: `data` as the
        editor wrote it (from `draft_from_feedback`), or without it the prefilled case itself."""
        exchange = self._rated(tenant, assistant, turn_id)
        return self.create_case(principal, tenant, assistant, data or from_feedback.prefill(exchange), route=route,
                                source=from_feedback.source(turn_id))

    # -- runs ----------------------------------------------------------------------------------------------------

    def start_run(self, principal: Principal, tenant: str, assistant: str, *, version: int | None,
                  body: str | None, config: dict[str, Any], tier: str | None, route: str,
                  judge: bool = False, background: bool = True) -> dict[str, Any]:
        """A new run of `version` (or the draft `body`) over the set's cases; started in the background unless
        `background` is False (then the caller executes it: the CLI)."""
        trial = self.prompts.trial(principal, tenant, assistant, version=version if body is None else None,
                                   body=body, config=config)  # the version exists, the draft is valid
        if tier is not None and tier not in trial.tenant.model_policy.allowed_tiers:
            raise Invalid(f"tier {tier!r} is not allowed for {trial.tenant.name}; allowed: "
                          f"{', '.join(trial.tenant.model_policy.allowed_tiers)}", code="tier_not_allowed")
        live = self.prompts.llm.tiers()
        if tier is not None and tier not in live:
            # Answered by another tier, the run would be stored under this one's name and mislead the gate.
            raise Invalid(f"tier {tier!r} is not available now (no deployment of it is configured with its key); "
                          f"available: {', '.join(t for t in live if t in trial.tenant.model_policy.allowed_tiers)}"
                          f" — run on one of those, or set the provider's key in the environment (config/models.yaml)",
                          code="tier_not_available")
        judge_name = None
        if judge:
            allowed = trial.tenant.model_policy.allowed_tiers
            judge_name = self.runner.judge.name(allowed) if self.runner.judge is not None else None
            if judge_name is None:
                raise Invalid("no judge is available: it needs a provider model on the fast tier (the local model "
                              "cannot judge); run without `judge` — the offline checks still apply",
                              code="no_judge")
        with self.db.session() as session:
            rows = repo.list_cases(session=session, tenant=tenant, assistant=assistant)
        ids = [c.id for c in rows if checks_something(c)]
        if not ids:
            raise Invalid(f"{assistant} has no case to run" + (" (its cases check nothing yet: say what a good "
                                                                "answer states)" if rows else ": add cases first"),
                          code="no_cases")
        run = EvalRun(id=secrets.token_hex(8), tenant=tenant, assistant=assistant,
                      prompt_version=None if body is not None else version,
                      draft={"body": body, "config": config} if body is not None else None, tier=tier,
                      kb_version=self.kb_version(tenant), case_ids=ids,
                      skipped=[c.id for c in rows if not checks_something(c)], total=len(ids),
                      judge=judge_name, started_by=principal.subject, status="queued")
        with self.db.session() as session:
            repo.add_run(session=session, tenant=tenant, run=run)
            session.commit()
        self.audit.record("eval_run_started", subject=principal.subject, tenant=tenant, route=route, status=202,
                          detail={"assistant": assistant, "run": run.id, "version": run.prompt_version,
                                  "draft": body is not None, "tier": tier, "cases": len(ids),
                                  "judge": judge_name})
        if background:
            self._spawn(principal, tenant, run.id)
        return run_public(run, resumable=False)

    def resume_run(self, principal: Principal, tenant: str, assistant: str, run_id: str, *,
                   route: str, background: bool = True) -> dict[str, Any]:
        """Continue a run that stopped (a quota, a failure, a cancel, a process that died): only the cases without
        a result. Its calls from here on are charged to whoever resumes it (they caused them)."""
        self._assistant(tenant, assistant)
        row = self._run_row(tenant, assistant, run_id, principal=principal, route=route)
        if run_id in self.tasks and not self.tasks[run_id].done():
            stopping = " and stops after the case it is answering: resume it in a moment" if (
                row.status == "cancelled") else ""
            raise Conflict(f"run {run_id} is running{stopping}", code="run_in_progress")
        self.runner.claim(tenant, run_id)
        self.audit.record("eval_run_resumed", subject=principal.subject, tenant=tenant, route=route, status=202,
                          detail={"assistant": assistant, "run": run_id})
        if background:
            self._spawn(principal, tenant, run_id, claimed=True)
        return run_public(self._run_row(tenant, assistant, run_id), resumable=False)

    def cancel_run(self, principal: Principal, tenant: str, assistant: str, run_id: str, *, route: str,
                   reason: str | None = None) -> tuple[dict[str, Any], bool]:
        """Stop a queued or running run, in whichever process runs it: it stops before its next case (the case in
        progress is kept) and stays `cancelled`, resumable like a failed run. (the run, whether this call cancelled
        it): a run already cancelled is returned as it is; a finished or failed one is a Conflict."""
        self._assistant(tenant, assistant)
        row = self._run_row(tenant, assistant, run_id, principal=principal, route=route)
        with self.db.session() as session:
            cancelled = repo.cancel_run(session=session, tenant=tenant, run_id=run_id,
                                        error=(reason or f"cancelled by {principal.subject}")[:500])
        row = self._run_row(tenant, assistant, run_id)
        if not cancelled:
            if row.status == "cancelled":
                return run_public(row, resumable=self._resumable(row)), False
            if row.status == "finished":
                raise Conflict(f"run {run_id} has finished: there is nothing to cancel", code="run_finished")
            raise Conflict(f"run {run_id} has already stopped ({row.error or row.status}): there is nothing to "
                           f"cancel; resume it to answer the rest", code="run_not_running")
        self.audit.record("eval_run_cancelled", subject=principal.subject, tenant=tenant, route=route, status=202,
                          detail={"assistant": assistant, "run": run_id, "done": row.done, "total": row.total})
        return run_public(row, resumable=self._resumable(row)), True

    def _spawn(self, principal: Principal, tenant: str, run_id: str, *, claimed: bool = False) -> None:
        async def work() -> None:
            try:
                if not claimed:
                    try:
                        self.runner.claim(tenant, run_id, new=True)
                    except Conflict:  # cancelled before it started: nothing to do
                        return
                await self.runner.execute(principal, tenant, run_id)
            finally:
                self.tasks.pop(run_id, None)

        self.tasks[run_id] = asyncio.get_running_loop().create_task(work(), name=f"eval-run-{run_id}")

    def _run_row(self, tenant: str, assistant: str, run_id: str, *, principal: Principal | None = None,
                 route: str = "") -> EvalRun:
        """The run, else NotFound; a request (`principal`) naming another tenant's run id is audited: a leak or a
        guess, as for another tenant's document id."""
        with self.db.session() as session:
            run = repo.get_run(session=session, tenant=tenant, run_id=run_id, assistant=assistant)
            foreign = repo.run_tenant(session=session, run_id=run_id) if run is None and principal else None
        if run is None:
            if foreign is not None and foreign != tenant:
                self.audit.record("denied", subject=principal.subject if principal else None, tenant=tenant,
                                  route=route, status=404, reason="other_tenants_run", detail={"run": run_id[:64]})
            raise NotFound(f"{assistant} has no run {run_id!r}", code="run_not_found")
        return run

    def _resumable(self, run: EvalRun) -> bool:
        if run.status in ("failed", "cancelled"):
            return True
        if run.status in ("running", "queued") and run.id not in self.tasks:
            with self.db.session() as session:  # its process died: anyone may take it over
                return not repo.owner_alive(session=session, owner=run.owner, lease_s=self.runner.lease_s)
        return False

    def runs(self, tenant: str, assistant: str, *, limit: int = 50) -> list[dict[str, Any]]:
        self._assistant(tenant, assistant)
        with self.db.session() as session:
            rows = repo.list_runs(session=session, tenant=tenant, assistant=assistant, limit=limit)
        return [run_public(r, resumable=self._resumable(r)) for r in rows]

    def run(self, tenant: str, assistant: str, run_id: str, *, principal: Principal | None = None,
            route: str = "") -> dict[str, Any]:
        self._assistant(tenant, assistant)
        run = self._run_row(tenant, assistant, run_id, principal=principal, route=route)
        with self.db.session() as session:
            results = repo.list_results(session=session, tenant=tenant, run_id=run_id)
        return {**run_public(run, resumable=self._resumable(run)), "kb_current": run.kb_version == self.kb_version(
            tenant), "results": [result_public(r) for r in results]}

    def baseline(self, tenant: str, assistant: str, *, version: int, kb_version: str, tier: str | None,
                 cases: int | None = None, judged: bool = False) -> dict[str, Any] | None:
        """The latest finished run of `version` on this knowledge base and tier, judged or not like the run it is
        compared with (over `cases` cases when given):
        what a new run of another version is compared with. None when there is none."""
        with self.db.session() as session:
            rows = repo.list_runs(session=session, tenant=tenant, assistant=assistant, prompt_version=version,
                                  status="finished", limit=20)
        for row in rows:
            if (row.kb_version == kb_version and row.tier == tier and (row.judge is not None) == judged
                    and (cases is None or row.total == cases)):
                return run_public(row, resumable=False)
        return None

    def compare(self, tenant: str, assistant: str, a: str, b: str, *, principal: Principal | None = None,
                route: str = "") -> dict[str, Any]:
        self._assistant(tenant, assistant)
        runs = [self._run_row(tenant, assistant, x, principal=principal, route=route) for x in (a, b)]
        with self.db.session() as session:
            results = [repo.list_results(session=session, tenant=tenant, run_id=r.id) for r in runs]
        return compare_runs(run_public(runs[0]), run_public(runs[1]), [result_public(r) for r in results[0]],
                            [result_public(r) for r in results[1]])
