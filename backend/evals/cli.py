"""`atrium eval run | import | export`: prompts as code. `eval run` evaluates a saved version or a prompt file (a
version file as `atrium prompts export` writes it) over the assistant's test set, with a progress bar, and compares
it with the version in production on the same knowledge base (running production too when it has no such run):

    exit 0  no case that passes in production fails (and the score is at least --min-score)
    exit 1  a regression (the failing cases are listed), or a score below --min-score
    exit 2  a usage error (unknown tenant or assistant, a bad file, no cases), or a run that could not finish
            (a quota, a model failure: `atrium eval run` again resumes nothing — start it later)
    exit 130  Ctrl-C: the run in progress is marked `cancelled` (not left "running"), its checked cases kept;
              the studio's Tests tab or POST …/runs/{id}/resume answers the rest

The CLI acts as the operator `cli` (its usage rows, channel eval, are that subject's), with an editor's rights in
the tenant it names.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.auth.principal import CLI_OWNER, MEMBER, PROMPT_EDITOR, Principal
from backend.errors import AtriumError

ServicesFactory = Callable[[], Any]
_FILE_ONLY = ("author", "author_for", "created_at", "message")  # what a saved file records about itself


def add_eval_commands(sub: Any, services: ServicesFactory) -> None:
    """Register `eval run|import|export` on the `atrium` parser (backend/cli.py); `services()` builds the app's."""
    evals = sub.add_parser("eval", help="evaluate prompt versions against the assistant's test cases (README "
                                        "\"Evaluating prompt changes\")").add_subparsers(dest="eval_command",
                                                                                        required=True)
    run = evals.add_parser("run", help="run the test set on a version or a prompt file; exit 1 on a regression "
                                       "against production")
    _target(run)
    which = run.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="a saved version (default: the one labelled production)")
    which.add_argument("--file", type=Path, help="a prompt file (front matter + body), e.g. an edited v0003.md")
    run.add_argument("--tier", help="the tier to answer on (default: the prompt's)")
    run.add_argument("--judge", action="store_true", help="also grade with a provider model (fast tier)")
    run.add_argument("--min-score", type=float, default=None, help="also fail below this share of passing cases")
    run.set_defaults(func=lambda args: cmd_run(args, services))
    importing = evals.add_parser("import", help="add or update the assistant's cases from a YAML file")
    _target(importing)
    importing.add_argument("file", type=Path)
    importing.set_defaults(func=lambda args: cmd_import(args, services))
    export = evals.add_parser("export", help="write the assistant's cases as YAML (to FILE, or stdout)")
    _target(export)
    export.add_argument("file", type=Path, nargs="?")
    export.set_defaults(func=lambda args: cmd_export(args, services))


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--assistant", required=True)


def operator(tenant: str) -> Principal:
    return Principal(subject=CLI_OWNER, name="atrium eval", tenants={tenant: frozenset({MEMBER, PROMPT_EDITOR})},
                     auth="cli")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2


def cmd_import(args: argparse.Namespace, services: ServicesFactory) -> int:
    if not args.file.is_file():
        return _error(f"{args.file}: no such file")
    svc = services()
    try:
        counts = svc.evals.import_yaml(operator(args.tenant), args.tenant, args.assistant,
                                       args.file.read_text(encoding="utf-8"), route="cli:eval import")
    except AtriumError as exc:
        for problem in exc.extra.get("problems", []):
            print(f"error: {args.file}: {problem['where']}: {problem['problem']}", file=sys.stderr)
        return _error(exc.message)
    print(f"{args.tenant}/{args.assistant}: {counts['added']} added, {counts['updated']} updated, "
          f"{counts['unchanged']} unchanged")
    return 0


def cmd_export(args: argparse.Namespace, services: ServicesFactory) -> int:
    try:
        text = services().evals.export_yaml(args.tenant, args.assistant)
    except AtriumError as exc:
        return _error(exc.message)
    if args.file is None:
        sys.stdout.write(text)
    else:
        args.file.write_text(text, encoding="utf-8")
        print(f"wrote {args.file}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace, services: ServicesFactory) -> int:
    body, config = None, {}
    if args.file is not None:
        from backend.prompts.contract import parse_prompt_file

        if not args.file.is_file():
            return _error(f"{args.file}: no such file")
        try:
            config, body = parse_prompt_file(args.file.read_text(encoding="utf-8"), source=str(args.file))
        except ValueError as exc:
            return _error(str(exc))
        config = {k: v for k, v in config.items() if k not in _FILE_ONLY}
    svc = services()
    try:
        return asyncio.run(_run(svc, args, body, config))
    except Interrupted as stop:
        run = stop.run
        print(f"cancelled: run {run['id']} stopped after {run['done']} of {run['total']} cases (status "
              f"{run['status']}); the studio's Tests tab (or POST …/evals/{args.assistant}/runs/{run['id']}/resume) "
              f"answers the rest", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C outside a run (starting, comparing): nothing is left running
        print("interrupted", file=sys.stderr)
        return 130
    except AtriumError as exc:
        for problem in exc.extra.get("problems", []):
            where = problem.get("field") or problem.get("where")
            print(f"error: {where}: {problem.get('message') or problem.get('problem')}", file=sys.stderr)
        return _error(exc.message)


async def _run(svc: Any, args: argparse.Namespace, body: str | None, config: dict[str, Any]) -> int:
    who, evals = operator(args.tenant), svc.evals
    svc.prompt_service.assistant_tenant(args.tenant, args.assistant)  # NotFound naming the tenant's assistants
    production = svc.prompts.labels(args.tenant, args.assistant).get("production")
    version = args.version if body is None else None
    if body is None and version is None:
        if production is None:
            return _error(f"{args.assistant} has no production version: pass --version or --file")
        version = production
    what = f"version {version}" if body is None else f"{args.file}"
    run = await _execute(evals, who, args, what, version=version, body=body, config=config)
    if run["status"] != "finished":
        return _error(f"the run of {what} stopped: {run['error']}")
    print(f"{what}: {run['passed']}/{run['done']} passed (score {run['score']:.0%}), {run['tokens']} tokens, "
          f"${run['cost_usd']:.4f}, median {run['latency_ms']} ms per case [run {run['id']}]")
    failed = 0
    if production is not None and not (body is None and version == production):
        base = evals.baseline(args.tenant, args.assistant, version=production, kb_version=run["kb_version"],
                              tier=args.tier, cases=run["total"], judged=args.judge)
        if base is None:
            base = await _execute(evals, who, args, f"production (version {production})", version=production,
                                  body=None, config={})
            if base["status"] != "finished":
                return _error(f"the baseline run of production stopped: {base['error']}")
        failed = report_regressions(svc, args.tenant, args.assistant, run=run, base=base, production=production)
    if failed:
        print(f"{failed} case(s) pass in production and fail in {what}", file=sys.stderr)
        return 1
    if args.min_score is not None and (run["score"] or 0.0) < args.min_score:
        print(f"score {run['score']:.0%} is below --min-score {args.min_score:.0%}", file=sys.stderr)
        return 1
    print("no regression")
    return 0


def report_regressions(svc: Any, tenant: str, assistant: str, *, run: dict[str, Any], base: dict[str, Any],
                       production: int) -> int:
    """Print how `run` compares with production's `base` run; the number of regressions. What a regression is
    is the release gate's decision (gate.regressions, over the current case set), so that the CLI's exit 1 and a
    refused promotion never disagree; the comparison only supplies each case's failing checks and the fixes."""
    diff = svc.evals.compare(tenant, assistant, base["id"], run["id"])
    failing = svc.eval_gate.regressions(tenant, assistant, run_id=run["id"], against_id=base["id"])
    regressed = {c["id"]: c for c in failing}
    print(f"production (version {production}): score {diff['score']['a']:.0%} on the same cases "
          f"[run {base['id']}]")
    for change in diff["changed"]:
        if change["direction"] == "regressed" and regressed.pop(change["case"], None) is not None:
            why = "; ".join(f"{k}: {v['detail']}" for k, v in change["b"]["checks"].items() if v["ok"] is False)
            print(f"REGRESSED {change['case']}: {change['question']}\n    {why}")
        elif change["direction"] == "fixed":
            print(f"fixed     {change['case']}: {change['question']}")
    for case in regressed.values():  # passes on production, not run here (added to the set during the run)
        print(f"REGRESSED {case['id']}: {case['question']}\n    {case['why']}")
    return len(failing)


async def _execute(evals: Any, who: Principal, args: argparse.Namespace, what: str, *, version: int | None,
                   body: str | None, config: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm

    started = evals.start_run(who, args.tenant, args.assistant, version=version, body=body, config=config,
                              tier=args.tier, judge=args.judge, route="cli:eval run", background=False)
    bar = tqdm(total=started["total"], desc=what, unit="case", file=sys.stderr, dynamic_ncols=True)
    try:
        evals.runner.claim(args.tenant, started["id"], new=True)
        last = [0]

        def progress(row: Any) -> None:
            bar.update(row.done - last[0])
            last[0] = row.done
            bar.set_postfix(passed=row.passed, refresh=False)

        work = asyncio.ensure_future(evals.runner.execute(who, args.tenant, started["id"], progress=progress))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # Ctrl-C (asyncio.run cancels this coroutine): the run is marked cancelled first — audited, resumable
            # — and only then is the case in progress abandoned, so the runner's "interrupted" never replaces it.
            with contextlib.suppress(AtriumError):  # it finished (or failed) just then: left as it is
                evals.cancel_run(who, args.tenant, args.assistant, started["id"], route="cli:eval run",
                                 reason="cancelled with Ctrl-C in atrium eval run")
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            raise Interrupted(evals.run(args.tenant, args.assistant, started["id"])) from None
    finally:
        bar.close()
    return evals.run(args.tenant, args.assistant, started["id"])


class Interrupted(Exception):
    """Ctrl-C during a run: the run, as it was left (cancelled)."""

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(run["id"])
        self.run = run
