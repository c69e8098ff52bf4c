"""Routing benchmark: auto routing vs always-`smart`, on the labelled holdout questions.

    .venv/bin/python bench/routing/run.py                     # both holdout files (80 + 180 questions)
    .venv/bin/python bench/routing/run.py --recompute         # measure the input tokens again (bench/routing/tokens.py)
    .venv/bin/python bench/routing/run.py --answer-scale 0.5  # sensitivity: answers half as long (or 2 = twice)
    .venv/bin/python bench/routing/run.py --answer-cap 256    # sensitivity: the demo prompts' max_tokens
    .venv/bin/python bench/routing/run.py --assume-context 800  # the old assumed token model, for comparison
    .venv/bin/python bench/routing/run.py --answer-refusals   # what if "I don't know" questions reached the model

Per classifier (the shipped logistic model, keyword rules, perfect labels): the share of heavy questions routed
to `smart` (with counts), light questions routed to `fast`, accuracy, classification latency; then, per price
pair from LiteLLM's price table, the cost of always-`smart` vs auto routing.

Token model. Input tokens are measured through the real chat pipeline (bench/routing/tokens.py, cached in
bench/data/routing_tokens.json): the rendered system prompt with the retrieved passages + the question;
a question the pipeline answers "I don't know" (nothing relevant retrieved) makes no model call and costs 0 in
both arms. Output tokens are ASSUMED by kind of task (ANSWER_TOKENS) and are the same for both tiers, so only
the price differs; --answer-scale / --answer-cap show how much the result depends on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import litellm  # noqa: E402
import tokens as measured_tokens  # noqa: E402  (bench/routing/tokens.py)

from backend.llm.routing import MODEL_PATH, Classification, QueryClassifier, rules_classify  # noqa: E402
from backend.prompts.store import PromptStore  # noqa: E402

GOAL_SAVING, GOAL_HEAVY_ON_SMART = 0.40, 0.95  # issue 6
ANSWER_TOKENS = {  # assumed typical answer lengths by task kind (output tokens)
    "greeting": 30, "lookup": 120, "rewrite": 90, "title": 15, "classify": 25,
    "reasoning": 350, "synthesis": 500, "compare": 450, "plan": 600, "draft": 500, "analysis": 450, "code": 450,
}
# (name, smart, fast): the three pairs of config/models.yaml first (the providers' current models, December
# 2026), then other current pairs, then the previous generation (Sonnet 4.5 retired 2026-11-30, Gemini 2.5 on
# 2026-12-01, GPT-4.1 retires 2027-01-14), kept for comparison. All keys are in LiteLLM's own price table.
PAIRS = [
    ("Claude Sonnet 5.5 / Haiku 5.5", "anthropic/claude-sonnet-5-5", "anthropic/claude-haiku-5-5"),
    ("GPT-6.1 Sol / GPT-6 Luna", "openai/gpt-6.1-sol", "openai/gpt-6-luna"),
    ("Gemini 3.8 Flash / 3.5 Flash-Lite", "gemini/gemini-3.8-flash", "gemini/gemini-3.5-flash-lite"),
    ("GPT-6.1 Terra / GPT-6 Luna", "openai/gpt-6.1-terra", "openai/gpt-6-luna"),
    ("Claude Sonnet 5.5 / Haiku 4.5", "anthropic/claude-sonnet-5-5", "anthropic/claude-haiku-4-5"),
    ("previous: Claude Sonnet 4.5 / Haiku 4.5", "anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
    ("previous: GPT-4.1 / GPT-4.1 mini", "openai/gpt-4.1", "openai/gpt-4.1-mini"),
    ("previous: Gemini 2.5 Pro / 2.5 Flash", "gemini/gemini-2.5-pro", "gemini/gemini-2.5-flash"),
    ("previous: GPT-5 / GPT-5 mini", "openai/gpt-5", "openai/gpt-5-mini"),
]
HOLDOUT = [ROOT / "bench/data/routing_questions_holdout.jsonl", ROOT / "bench/data/routing_questions_holdout2.jsonl"]


@dataclass
class Row:
    tenant: str
    question: str
    label: str
    kind: str
    source: str
    prompt_tokens: int  # 0 = the pipeline answers "I don't know" without a model call
    completion_tokens: int


def load(paths: list[Path], args: argparse.Namespace) -> list[Row]:
    raw = [(json.loads(line), p.name) for p in paths for line in p.read_text().splitlines() if line.strip()]
    if args.assume_context is None:
        counts = measured_tokens.prompt_tokens([r for r, _ in raw], recompute=args.recompute)
        pts = [counts[measured_tokens.key(r)]["prompt_tokens"] or (no_context_tokens(r) if args.answer_refusals else 0)
               for r, _ in raw]
    else:  # the previous, assumed model: every question reaches the model with a fixed amount of context
        store = PromptStore(ROOT / "prompts")
        pts = [litellm.token_counter(model=measured_tokens.TOKENIZER, messages=[
            {"role": "system", "content": store.resolve(r["tenant"], measured_tokens.ASSISTANT[r["tenant"]]).body},
            {"role": "user", "content": r["question"]}]) + args.assume_context for r, _ in raw]
    rows = []
    for (r, source), pt in zip(raw, pts, strict=True):
        ct = round(ANSWER_TOKENS[r["kind"]] * args.answer_scale)
        if args.answer_cap:
            ct = min(ct, args.answer_cap)
        rows.append(Row(r["tenant"], r["question"], r["label"], r["kind"], source, pt, ct if pt else 0))
    return rows


def no_context_tokens(row: dict) -> int:
    """Input tokens if the pipeline sent a question with no relevant passages to the model anyway
    (hypothetical: today it answers "I don't know" without a model call)."""
    from backend.chat.pipeline import NO_CONTEXT
    from backend.prompts.store import render
    from backend.tenants import TenantRegistry

    prompt = PromptStore(ROOT / "prompts").resolve(row["tenant"], measured_tokens.ASSISTANT[row["tenant"]])
    tenant = TenantRegistry.load(ROOT / "config" / "tenants.yaml").get(row["tenant"])
    assert tenant is not None
    variables = {"user_name": measured_tokens.USER[row["tenant"]][1], "tenant_name": tenant.name,
                 "today": "2026-01-01", "context": NO_CONTEXT}
    system = render(prompt.body, variables, declared=prompt.config.get("variables"))
    return litellm.token_counter(model=measured_tokens.TOKENIZER, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": row["question"]}])


def cost(model: str, pt: int, ct: int) -> float:
    if not pt:
        return 0.0
    a, b = litellm.cost_per_token(model=model, prompt_tokens=pt, completion_tokens=ct)
    return a + b


def spend(rows: list[Row], labels: list[str], smart: str, fast: str) -> float:
    return sum(cost(fast if p == "light" else smart, r.prompt_tokens, r.completion_tokens)
               for p, r in zip(labels, rows, strict=True))


def heavy_on_smart(labels: list[str], rows: list[Row], where: Callable[[Row], bool]) -> tuple[int, int]:
    """(heavy questions routed to smart, heavy questions) among the rows `where` selects."""
    pairs = [(p, r) for p, r in zip(labels, rows, strict=True) if r.label == "heavy" and where(r)]
    return sum(p == "heavy" for p, _ in pairs), len(pairs)


def pct(n: int, d: int) -> str:
    return f"{n}/{d} = {n / d:.1%}" if d else "-"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", nargs="+", type=Path, default=HOLDOUT)
    ap.add_argument("--recompute", action="store_true", help="measure the input tokens again")
    ap.add_argument("--answer-scale", type=float, default=1.0, help="multiply the assumed answer lengths")
    ap.add_argument("--answer-cap", type=int, default=0, help="cap answers at this many tokens (max_tokens)")
    ap.add_argument("--assume-context", type=int, default=None, metavar="TOKENS",
                    help="instead of measuring: every question reaches the model with this much context")
    ap.add_argument("--answer-refusals", action="store_true",
                    help='hypothetical: questions the pipeline answers "I don\'t know" go to the model, no context')
    args = ap.parse_args()
    rows = load(args.data, args)
    model = QueryClassifier.load()
    heavy = [r for r in rows if r.label == "heavy"]
    called = sum(r.prompt_tokens > 0 for r in rows)
    print(f"{len(rows)} questions ({len(heavy)} heavy) from {', '.join(p.name for p in args.data)}; "
          f"model {model.version} (cross-validated heavy recall on train "
          f"{json.loads(MODEL_PATH.read_text()).get('cv_heavy_recall')})")
    if args.assume_context is None:
        pts = sorted(r.prompt_tokens for r in rows if r.prompt_tokens)
        print(f"input tokens measured through the chat pipeline: {called} questions reach the model (median "
              f"{statistics.median(pts):.0f}, max {pts[-1]} input tokens); {len(rows) - called} are answered "
              f"\"I don't know\" with no model call ({sum(not r.prompt_tokens for r in heavy)} of them heavy)"
              + (" [--answer-refusals: all reach the model]" if args.answer_refusals else ""))
    else:
        print(f"ASSUMED token model: system prompt + {args.assume_context} context tokens + question, every question")
    print(f"answer tokens by kind x{args.answer_scale}" + (f", capped at {args.answer_cap}" if args.answer_cap else "")
          + "\n")

    classifiers: list[tuple[str, Callable[[str], Classification] | None]] = [
        ("logistic model (shipped)", model.classify), ("keyword rules", rules_classify), ("perfect labels", None)]
    routed: dict[str, list[str]] = {}
    for name, classify in classifiers:
        labels, times = [], []
        for r in rows:
            t0 = time.perf_counter()
            labels.append(classify(r.question).label if classify else r.label)
            times.append((time.perf_counter() - t0) * 1e6)
        routed[name] = labels
        hits = [p == "heavy" for p, r in zip(labels, rows, strict=True) if r.label == "heavy"]
        light_ok = sum(p == "light" and r.label == "light" for p, r in zip(labels, rows, strict=True))
        acc = sum(p == r.label for p, r in zip(labels, rows, strict=True)) / len(rows)
        per_file = "; ".join(f"{src}: {pct(*heavy_on_smart(labels, rows, lambda r, s=src: r.source == s))}"
                             for src in dict.fromkeys(r.source for r in rows))
        print(f"## {name}")
        print(f"heavy on smart {pct(sum(hits), len(hits))} ({per_file}); of heavy questions that reach a model "
              f"{pct(*heavy_on_smart(labels, rows, lambda r: r.prompt_tokens > 0))}")
        print(f"light on fast {pct(light_ok, len(rows) - len(hits))}; accuracy {acc:.1%}; routed to fast "
              f"{labels.count('light')}/{len(rows)}" + (f"; latency median {statistics.median(times):.0f} µs, max "
                                                         f"{max(times):.0f} µs" if classify else ""))
        if name == classifiers[0][0]:
            for p, r in zip(labels, rows, strict=True):
                if p == "light" and r.label == "heavy":
                    print(f"  heavy sent to fast ({r.kind}, {'answered' if r.prompt_tokens else 'no model call'}): "
                          f"{r.question[:110]}")
        print()

    model_hos = sum(p == "heavy" for p, r in zip(routed[classifiers[0][0]], rows, strict=True) if r.label == "heavy")
    model_hos_ok = model_hos / len(heavy) >= GOAL_HEAVY_ON_SMART
    print("| pair (smart / fast) | always-smart | auto (shipped model) | saving | keyword rules | perfect labels "
          "| light share of spend | fast/smart price on light | goal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pair, smart, fast in PAIRS:
        try:
            base = spend(rows, ["heavy"] * len(rows), smart, fast)
            auto, rules, oracle = (spend(rows, routed[n], smart, fast) for n, _ in classifiers)
        except Exception as exc:  # a model missing from LiteLLM's price table
            print(f"| {pair} | not priced ({type(exc).__name__}) | | | | | | | |")
            continue
        light = [r for r in rows if r.label == "light"]
        light_smart = sum(cost(smart, r.prompt_tokens, r.completion_tokens) for r in light)
        light_fast = sum(cost(fast, r.prompt_tokens, r.completion_tokens) for r in light)
        share, ratio = light_smart / base, light_fast / light_smart
        saving = 1 - auto / base
        goal = "met" if saving >= GOAL_SAVING and model_hos_ok else "not met"
        print(f"| {pair} | ${base:.4f} | ${auto:.4f} | **{saving:.1%}** | {1 - rules / base:.1%} | "
              f"{1 - oracle / base:.1%} | {share:.1%} | {ratio:.3f} | {goal} |")
    print(f"\nceiling (perfect labels) = light share of always-smart spend x (1 - fast/smart price on light "
          f"questions); goal = saving >= {GOAL_SAVING:.0%} with heavy on smart >= {GOAL_HEAVY_ON_SMART:.0%} "
          f"(shipped model: {model_hos}/{len(heavy)})")
    for m in dict.fromkeys(m for _, smart, fast in PAIRS for m in (smart, fast)):
        info = litellm.model_cost.get(m) or litellm.model_cost.get(m.split("/", 1)[1], {})
        if info.get("deprecation_date"):
            print(f"  note: LiteLLM's table lists {m} with deprecation_date {info['deprecation_date']}")


if __name__ == "__main__":
    main()
