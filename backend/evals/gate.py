"""The release gate: may this prompt version go to production? A tenant policy (tenants.yaml `release_gate`).

Evidence, not faith: the version needs a finished test run on the knowledge base as it is now (a run on older
documents proves nothing about today's answers), in which no case that passes on production's latest run (on the same
knowledge base) fails, and, when the tenant sets `min_score`, at least that share of the cases passes.

States, as the studio's Release card and `GET …/evals/{assistant}/gate` show them:
  off        the tenant has no gate
  passed     the evidence is there
  missing    no finished run of the version (or of production, to compare with) on the current knowledge base
  stale      the version's runs are all on an older knowledge base: run it again
  regressed  a case passing on production's run fails on this one (named in `failing`)
  below_min  no regression, but fewer cases pass than the tenant's minimum
  running    a run of the version is under way

The prompt service asks through the ReleaseGate protocol (backend/prompts/release.py): prompts sit below the runs,
which go through the chat pipeline, so the container injects this class rather than prompts importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.db.engine import Database
from backend.db.repositories.evals import get_run, list_cases, list_results, list_runs
from backend.errors import NotFound
from backend.prompts.release import GateVerdict
from backend.tenants import TenantConfig

FINISHED = "finished"
UNDER_WAY = ("queued", "running")


@dataclass(frozen=True)
class RunFacts:
    """What the gate needs of one run: which version on which knowledge base, how far, and each case's verdict."""

    id: str
    version: int | None  # None: an unsaved draft (never evidence for a saved version)
    status: str
    kb_version: str
    tier: str | None
    score: float | None
    passed: dict[str, bool] = field(default_factory=dict)  # case id -> passed (finished cases only)
    judged: bool = False  # graded by a judge model too: compared only with runs graded the same way


@dataclass(frozen=True)
class Decision:
    verdict: GateVerdict
    run: RunFacts | None = None
    against: RunFacts | None = None
    min_score: float | None = None


def decide(*, enabled: bool, min_score: float | None, version: int, production: int | None, kb_version: str,
           runs: list[RunFacts], cases: dict[str, str]) -> Decision:
    """The gate's decision from plain facts. `runs`: the assistant's runs, newest first; `cases`: the current set
    (id -> question): a case deleted since is no longer a reason to refuse, a case added since is "not run"."""
    if not enabled:
        return Decision(GateVerdict("off", "No release gate: production moves without a test run."))
    mine = [r for r in runs if r.version == version]
    current = [r for r in mine if r.status == FINISHED and r.kb_version == kb_version]
    if not current:
        if any(r.status in UNDER_WAY for r in mine):
            run = next(r for r in mine if r.status in UNDER_WAY)
            return Decision(GateVerdict("running", f"A test run of version {version} is under way: production can "
                                                   "move once it has finished without a regression.", run=run.id),
                            run=run, min_score=min_score)
        if any(r.status == FINISHED for r in mine):
            run = next(r for r in mine if r.status == FINISHED)
            return Decision(GateVerdict("stale", f"Version {version} was tested on an older knowledge base (documents "
                                                 "changed since): run its tests again.", run=run.id),
                            run=run, min_score=min_score)
        return Decision(GateVerdict("missing", f"Version {version} has no finished test run: run its tests (Tests "
                                               "tab) before promoting it to production."), min_score=min_score)
    run = current[0]
    against = None
    failing: list[dict[str, Any]] = []
    if production is not None and production != version:
        theirs = [r for r in runs if r.version == production and r.status == FINISHED and r.kb_version == kb_version]
        # Only runs on the same tier are compared (a run on `smart` against one on `local` would credit or blame the
        # prompt for the model), and on every tier both were tested on: a newer run on another tier does not hide a
        # regression on the tier production was measured on.
        # Likewise graded the same way: a judge reads answers a prompt can write to persuade it.
        newest: dict[tuple[str | None, bool], RunFacts] = {}
        for r in current:
            newest.setdefault((r.tier, r.judged), r)
        pairs = [(mine_, next(r for r in theirs if (r.tier, r.judged) == key)) for key, mine_ in newest.items()
                 if any((r.tier, r.judged) == key for r in theirs)]
        if not pairs:
            tiers = ", ".join(sorted({str(t or "the prompt's own") + (" with a judge" if j else "")
                                      for t, j in newest}))
            return Decision(GateVerdict(
                "missing", f"Production (version {production}) has no finished test run on the current knowledge base "
                           f"on the same tier ({tiers}) to compare with: run production's tests too.", run=run.id),
                run=run, min_score=min_score)
        run, against = pairs[0]
        for mine_, theirs_ in pairs:
            failing = regressions(mine_, theirs_, cases)
            if failing:
                run, against = mine_, theirs_
                break
    if failing:
        names = "; ".join(f"“{c['question'][:80]}”" for c in failing[:3]) + (" …" if len(failing) > 3 else "")
        return Decision(GateVerdict("regressed", f"Version {version} breaks {len(failing)} case(s) that production "
                                                 f"passes: {names}", failing, run.id),
                        run=run, against=against, min_score=min_score)
    score = run.score if run.score is not None else 0.0
    if min_score is not None and score < min_score:
        failed = [{"id": c, "question": q, "why": "fails on this version"} for c, q in cases.items()
                  if c in run.passed and not run.passed[c]]
        return Decision(GateVerdict("below_min", f"Version {version} passes {score:.0%} of the cases; this department "
                                                 f"requires {min_score:.0%}.", failed, run.id),
                        run=run, against=against, min_score=min_score)
    return Decision(GateVerdict("passed", f"Version {version} passed its tests ({score:.0%})" +
                                (f" with no regression against production (version {production})." if against
                                 else "."), run=run.id),
                    run=run, against=against, min_score=min_score)


def regressions(run: RunFacts, against: RunFacts, cases: dict[str, str]) -> list[dict[str, Any]]:
    """What a regression is, for the release gate and for `atrium eval run` alike: a case of the current set
    (`cases`, id -> question) that passes on `against` (production's run) and does not pass on `run` — failed, or
    not run at all (added after the run). A case deleted since is no longer one, whatever the runs said of it."""
    failing = []
    for case_id, question in cases.items():
        if against.passed.get(case_id) and not run.passed.get(case_id):
            why = ("passes on production, fails on this version" if case_id in run.passed
                   else "passes on production, not run on this version (added after the run)")
            failing.append({"id": case_id, "question": question, "why": why})
    return failing


def _cases(session: Any, tenant: str, assistant: str) -> dict[str, str]:
    """The assistant's current set, id -> question: what `regressions` counts over."""
    return {c.id: c.question for c in list_cases(session=session, tenant=tenant, assistant=assistant)}


def _passed(session: Any, tenant: str, run_id: str) -> dict[str, bool]:
    return {r.case_id: bool(r.passed) for r in list_results(session=session, tenant=tenant, run_id=run_id)}


class EvalGate:
    """The gate over the stored runs: implements prompts' ReleaseGate and answers the studio's gate route."""

    def __init__(self, *, db: Database, kb_version: Callable[[str], str], run_public: Callable[[Any], dict]) -> None:
        """`kb_version`: tenant -> the fingerprint of its ready documents now (the knowledge service's);
        `run_public`: a run row -> its public form (the runs API's)."""
        self.db = db
        self.kb_version = kb_version
        self.run_public = run_public

    def _decide(self, tenant: TenantConfig, assistant: str, *, version: int,
                production: int | None) -> tuple[Decision, dict[str, Any]]:
        policy = tenant.release_gate
        if not policy.enabled:
            return decide(enabled=False, min_score=None, version=version, production=production, kb_version="",
                          runs=[], cases={}), {}
        with self.db.session() as session:
            # Only the two versions' runs matter (newest first): the candidate's and production's.
            rows = sorted((row for v in {version, production} if v is not None
                           for row in list_runs(session=session, tenant=tenant.id, assistant=assistant, limit=100,
                                                prompt_version=v)),
                          key=lambda row: row.created_at, reverse=True)
            cases = _cases(session, tenant.id, assistant)
            kb = self.kb_version(tenant.id)
            # Results only of the runs decide() can pick: the newest finished one on this knowledge base per
            # version, tier and grading (with a judge or not).
            picked: set[tuple[int | None, str | None, bool]] = set()
            runs = []
            for row in rows:
                key = (row.prompt_version, row.tier, row.judge is not None)
                usable = row.status == FINISHED and row.kb_version == kb and key not in picked
                if usable:
                    picked.add(key)
                passed = _passed(session, tenant.id, row.id) if usable else {}
                runs.append(RunFacts(row.id, row.prompt_version, row.status, row.kb_version, row.tier, row.score,
                                     passed, judged=row.judge is not None))
        decision = decide(enabled=True, min_score=policy.min_score, version=version, production=production,
                          kb_version=kb, runs=runs, cases=cases)
        return decision, {row.id: row for row in rows}

    def regressions(self, tenant: str, assistant: str, *, run_id: str, against_id: str) -> list[dict[str, Any]]:
        """The cases run `against_id` (production's) passes and run `run_id` does not, over the assistant's
        current set: the CLI's exit 1, decided by the same `regressions` as a promotion (whatever the two runs'
        versions: the CLI also compares an unsaved draft)."""
        with self.db.session() as session:
            facts = [RunFacts(row.id, row.prompt_version, row.status, row.kb_version, row.tier, row.score,
                              _passed(session, tenant, row.id), judged=row.judge is not None)
                     for row in (get_run(session=session, tenant=tenant, run_id=x, assistant=assistant)
                                 for x in (run_id, against_id)) if row is not None]
            cases = _cases(session, tenant, assistant)
        if len(facts) != 2:
            raise NotFound(f"{assistant} has no run {run_id!r} or {against_id!r}", code="run_not_found")
        return regressions(facts[0], facts[1], cases)

    def verdict(self, tenant: TenantConfig, assistant: str, *, version: int, production: int | None) -> GateVerdict:
        return self._decide(tenant, assistant, version=version, production=production)[0].verdict

    def state(self, tenant: TenantConfig, assistant: str, *, version: int, production: int | None) -> dict[str, Any]:
        """The gate route's answer: the state, the runs it judged (public), the failing cases and why."""
        d, rows = self._decide(tenant, assistant, version=version, production=production)
        return {"enabled": tenant.release_gate.enabled, "state": d.verdict.state, "message": d.verdict.message,
                "version": version, "production": production,
                "run": self.run_public(rows[d.run.id]) if d.run and d.run.id in rows else None,
                "against": self.run_public(rows[d.against.id]) if d.against and d.against.id in rows else None,
                "failing": d.verdict.failing, "min_score": d.min_score}
