"""The shipped demo test sets per tier: `local` (the in-process defaults) and `fast` / `smart` answered by a local
fake OpenAI-wire server (tests/llm/fakes.py FakeOpenAI) with scripted quality.

    .venv/bin/python bench/eval_tiers.py [--set sales/sales-assistant --set engineering/eng-assistant] [--seed 19]

In a fresh data dir with a config dir whose `fast` (openai/bench-fast) and `smart` (openai/bench-smart) deployments
point at the fake, each set's documents are ingested and the production version of its assistant is run over the
set three times, with the evaluation service as `atrium eval run --tier T` runs it (start_run, claim, execute: the
CLI's operator, the real pipeline — retrieval, prompt, model call, citations, checks, usage rows, quotas).

The script (what the fake answers, per request; the case is found by its question in the last user message):
- a good answer: for each expected fact, the first sentence of the context passages given to the model that states
  it (case-insensitive), with that passage's [n]; a fact no passage states verbatim is stated as it is, with [1]; a
  case with no facts (must_refuse) gets "I don't know: the documents I was given do not cover that."
- a bad answer, for a seeded fixed share of each set's cases (`smart` 10%, `fast` 30%, rounded, at least one;
  random.Random(f"{seed}:{tier}:{set}").sample over the case ids): a case with facts gets the good answer with every
  expected fact wrong (each number n in it becomes 3n+7, a fact without a number becomes "the regional board"); a
  must_refuse case gets an answer instead of the refusal ("According to the documents, it is <its first must_not
  phrase, or 'three weeks'> [1].").
- any other request (none expected: no case has earlier turns): "I don't know."
A case the pipeline refuses before any model call (retrieval found no passage) is never answered by the script.
Prints JSON per set and tier: score, median and p90 of the per-case time the run recorded, tokens and cost as
recorded on the run, the model calls, and how the scripted good and bad answers fared in the checks.
The fake reports a fixed usage of 11 prompt + 7 completion tokens per call (18 a call): the recorded tokens count
calls; `est_*` prices the requests' real size (4 characters a token) at the configured prices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.llm.fakes import FakeOpenAI, make_config_dir  # noqa: E402 - after the path

# tier -> (model, share of scripted bad answers, $ per input token, $ per output token): priced like a small and a
# large provider model (gpt-4o-mini's and gpt-4o's list prices).
TIERS = {"fast": ("openai/bench-fast", 0.30, 0.15e-6, 0.60e-6),
         "smart": ("openai/bench-smart", 0.10, 2.50e-6, 10.0e-6)}
OPEN = {"requests_per_minute": None, "user_requests_per_minute": None, "tokens_per_day": None,
        "monthly_budget_usd": None}
REFUSAL = "I don't know: the documents I was given do not cover that."
_PASSAGE = re.compile(r"^\[(\d+)\] [^\n]*\n", re.M)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def passages(system: str) -> list[tuple[int, str]]:
    """The numbered passages of the context (backend/chat/retrieve.py format_context: "[n] title\\nquote")."""
    marks = list(_PASSAGE.finditer(system))
    return [(int(m.group(1)), system[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(system)])
            for i, m in enumerate(marks)]


def good_answer(case: dict[str, Any], system: str) -> str:
    if not case.get("facts"):
        return REFUSAL
    found = passages(system)
    said: list[str] = []
    for fact in case["facts"]:
        line = next((f"{s.strip()} [{n}]" for n, quote in found for s in _SENTENCE.split(quote)
                     if fact.lower() in s.lower() and s.strip()), f"{fact} [1].")
        if line not in said:
            said.append(line)
    return " ".join(said)


def wrong(fact: str) -> str:
    if re.search(r"\d", fact):
        return re.sub(r"\d+(?:,\d{3})*", lambda m: f"{int(m.group().replace(',', '')) * 3 + 7:,}", fact)
    return "the regional board"


def bad_answer(case: dict[str, Any], system: str) -> str:
    if not case.get("facts"):
        return f"According to the documents, it is {(case.get('must_not') or ['three weeks'])[0]} [1]."
    text = good_answer(case, system)
    for fact in case["facts"]:
        text = re.sub(r"(?<!\w)" + re.escape(fact) + r"(?!\w)", lambda _m, f=fact: wrong(f), text, flags=re.I)
    return text


class Script:
    """The fake's reply: good or bad per (tier, case), the requests' size, what was served."""

    def __init__(self, cases: list[dict[str, Any]], bad: dict[str, set[str]]) -> None:
        self.cases, self.bad = cases, bad
        self.served: dict[str, dict[str, str]] = {t: {} for t in TIERS}  # tier -> case id -> "good" | "bad"
        self.chars: dict[str, list[tuple[int, int]]] = {t: [] for t in TIERS}  # tier -> (prompt, answer) chars
        self.unmatched = 0

    def __call__(self, body: dict[str, Any]) -> tuple[str, str]:
        tier = next((t for t, (m, *_) in TIERS.items() if body.get("model") == m.split("/", 1)[1]), "fast")
        messages = body.get("messages") or []
        question = str([m["content"] for m in messages if m["role"] == "user"][-1]) if messages else ""
        system = " ".join(str(m["content"]) for m in messages if m["role"] == "system")
        case = next((c for c in self.cases if c["question"] in question), None)
        if case is None:
            text, self.unmatched = "I don't know.", self.unmatched + 1
        elif case["id"] in self.bad[tier]:
            text, self.served[tier][case["id"]] = bad_answer(case, system), "bad"
        else:
            text, self.served[tier][case["id"]] = good_answer(case, system), "good"
        self.chars[tier].append((sum(len(str(m.get("content") or "")) for m in messages), len(text)))
        return text, "stop"


def p90(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


async def run_tier(svc: Any, tenant: str, assistant: str, version: int, tier: str) -> dict[str, Any]:
    """One run of `version` on `tier`, as `atrium eval run --version V --tier T` executes it (backend/evals/cli.py)."""
    from backend.evals.cli import operator

    who = operator(tenant)
    began = time.monotonic()
    started = svc.evals.start_run(who, tenant, assistant, version=version, body=None, config={}, tier=tier,
                                  judge=False, route="cli:eval run", background=False)
    svc.evals.runner.claim(tenant, started["id"])
    await svc.evals.runner.execute(who, tenant, started["id"])
    run = svc.evals.run(tenant, assistant, started["id"])
    run["wall_s"] = round(time.monotonic() - began, 1)
    return run


def summary(run: dict[str, Any], script: Script | None, tier: str, calls_before: int) -> dict[str, Any]:
    times = [r["latency_ms"] for r in run["results"]]
    out: dict[str, Any] = {
        "status": run["status"], "error": run["error"], "model": run["model"],
        "passed": run["passed"], "total": run["total"], "score": run["score"],
        "median_ms": int(statistics.median(times)) if times else None, "p90_ms": p90(times) if times else None,
        "tokens": run["tokens"], "cost_usd": run["cost_usd"], "wall_s": run["wall_s"],
        "failed": {r["case_id"]: [k for k, v in r["checks"].items() if v["ok"] is False]
                   for r in run["results"] if not r["passed"]},
    }
    if script is not None:
        _, _, price_in, price_out = TIERS[tier]
        sizes = script.chars[tier][calls_before:]
        served = script.served[tier]
        passed = {r["case_id"]: r["passed"] for r in run["results"]}
        out.update({
            "model_calls": len(sizes),
            "est_tokens": sum(p + a for p, a in sizes) // 4,
            "est_cost_usd": round(sum(p * price_in + a * price_out for p, a in sizes) / 4, 6),
            "scripted_bad": sorted(script.bad[tier]),
            "good_served": sum(1 for v in served.values() if v == "good"),
            "good_passed": sum(1 for c, v in served.items() if v == "good" and passed.get(c)),
            "bad_served": sum(1 for v in served.values() if v == "bad"),
            "bad_failed": sum(1 for c, v in served.items() if v == "bad" and passed.get(c) is False),
            "no_model_call": sorted(c for c in passed if c not in served),
        })
    return out


async def bench(svc: Any, sets: list[str], seed: int, script: Script) -> dict[str, Any]:
    from backend.knowledge.cli import ingest_paths

    report: dict[str, Any] = {}
    for name in sets:
        tenant, assistant = name.split("/")
        docs = sorted(str(p) for p in (ROOT / "demo" / "corpus" / tenant).glob("*.md"))
        began = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            assert ingest_paths(svc, tenant=tenant, paths=docs) == 0, f"ingesting {tenant} failed"
        ingest_s = round(time.monotonic() - began, 1)
        cases = svc.evals.cases(tenant, assistant)
        ids = sorted(c["id"] for c in cases)
        script.cases = cases
        for tier, (_, share, *_) in TIERS.items():
            script.bad[tier] = set(random.Random(f"{seed}:{tier}:{name}").sample(ids, max(1, round(share * len(ids)))))
            script.served[tier] = {}
        version = svc.prompts.labels(tenant, assistant)["production"]
        tiers: dict[str, Any] = {}
        for tier in ("local", *TIERS):
            before = len(script.chars[tier]) if tier in TIERS else 0
            run = await run_tier(svc, tenant, assistant, version, tier)
            tiers[tier] = summary(run, script if tier in TIERS else None, tier, before)
            print(f"{name} {tier}: {run['passed']}/{run['total']} in {run['wall_s']} s", file=sys.stderr, flush=True)
        report[name] = {"cases": len(cases), "version": version, "ingest_s": ingest_s, "tiers": tiers}
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", dest="sets", help="tenant/assistant (repeatable)")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    sets = args.sets or ["sales/sales-assistant", "engineering/eng-assistant"]
    tmp = Path(tempfile.mkdtemp(prefix="atrium-eval-tiers-"))
    script = Script([], {t: set() for t in TIERS})
    try:
        with FakeOpenAI(reply=script) as server:
            cfg = make_config_dir(tmp / "cfg", model_list=[
                {"model_name": "local", "litellm_params": {"model": "local/smollm2"},
                 "model_info": {"id": "local-smollm2", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}},
                *({"model_name": tier, "litellm_params": {"model": model, "api_key": "sk-bench",
                                                          "api_base": server.url}}
                  for tier, (model, *_) in TIERS.items())],
                fallbacks=[], quotas=OPEN, policy={"allowed_tiers": ["local", "fast", "smart"]},
                prices={model: {"input_cost_per_token": pin, "output_cost_per_token": pout}
                        for model, _, pin, pout in TIERS.values()},
                answers={t: {"mode": "generative", "grounding_check": False} for t in TIERS})
            shutil.copytree(ROOT / "prompts", tmp / "prompts")
            for key in [k for k in os.environ if k.startswith(("ATRIUM_", "DATABASE_URL", "REDIS_URL"))]:
                del os.environ[key]
            os.environ.update(ATRIUM_DATA_DIR=str(tmp / "data"), ATRIUM_PROMPTS_DIR=str(tmp / "prompts"),
                              ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_LOG_LEVEL="WARNING", ATRIUM_RESPONSE_CACHE="false")
            from backend.container import build_services
            from backend.settings import Settings

            began = time.monotonic()
            svc = build_services(Settings())
            start_s = round(time.monotonic() - began, 1)
            try:
                report = asyncio.run(bench(svc, sets, args.seed, script))
            finally:
                svc.close()
        print(json.dumps({"seed": args.seed, "start_s": start_s, "requests": len(server.requests),
                          "unmatched_requests": script.unmatched, "sets": report}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
