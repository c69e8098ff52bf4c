"""Routing benchmark: auto routing vs always-`smart`, on the labelled questions.

    .venv/bin/python bench/routing/run.py [--data bench/data/routing_questions_holdout.jsonl]

Reports, per classifier (the shipped logistic model, keyword rules): accuracy, the share of heavy
questions that still reach `smart`, classification latency, and the cost of auto routing vs. always-smart
priced with LiteLLM's price table for realistic tier pairs. Token counts per question: the real system
prompt (prompts/<tenant>/.../production) + a retrieved context of CONTEXT_TOKENS + the question, and an
answer length by kind of task (ANSWER_TOKENS) — the same for both tiers, so only the price differs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import litellm  # noqa: E402

from backend.llm.routing import QueryClassifier, rules_classify  # noqa: E402
from backend.prompts.store import PromptStore  # noqa: E402

CONTEXT_TOKENS = 800  # top-5 retrieved passages
ANSWER_TOKENS = {  # typical answer lengths by task kind
    "greeting": 30, "lookup": 120, "rewrite": 90, "title": 15, "classify": 25,
    "reasoning": 350, "synthesis": 500, "compare": 450, "plan": 600, "draft": 500, "analysis": 450, "code": 450,
}
PAIRS = [  # (name, smart, fast)
    ("Claude Sonnet 4.5 / Haiku 4.5", "anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
    ("GPT-4.1 / GPT-4.1 mini", "openai/gpt-4.1", "openai/gpt-4.1-mini"),
    ("Gemini 2.5 Pro / 2.5 Flash", "gemini/gemini-2.5-pro", "gemini/gemini-2.5-flash"),
]
ASSISTANT = {"sales": "sales-assistant", "engineering": "eng-assistant", "finance": "finance-assistant"}


def prompt_tokens(row: dict, store: PromptStore, context_tokens: int = CONTEXT_TOKENS) -> int:
    body = store.resolve(row["tenant"], ASSISTANT[row["tenant"]]).body
    msgs = [{"role": "system", "content": body}, {"role": "user", "content": row["question"]}]
    return litellm.token_counter(model="gpt-4o", messages=msgs) + context_tokens


def cost(model: str, pt: int, ct: int) -> float:
    a, b = litellm.cost_per_token(model=model, prompt_tokens=pt, completion_tokens=ct)
    return a + b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "bench/data/routing_questions_holdout.jsonl"))
    ap.add_argument("--context-tokens", type=int, default=CONTEXT_TOKENS)
    args = ap.parse_args()
    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()]
    store = PromptStore(ROOT / "prompts")
    tokens = [(prompt_tokens(r, store, args.context_tokens), ANSWER_TOKENS[r["kind"]]) for r in rows]
    model = QueryClassifier.load()
    heavy_n = sum(r["label"] == "heavy" for r in rows)
    print(f"{len(rows)} questions ({heavy_n} heavy) from {Path(args.data).name}; model {model.version}; "
          f"retrieved context {args.context_tokens} tokens per question\n")
    for name, classify in (("logistic model (shipped)", model.classify), ("keyword rules", rules_classify)):
        labels, times = [], []
        for r in rows:
            t0 = time.perf_counter()
            labels.append(classify(r["question"]).label)
            times.append((time.perf_counter() - t0) * 1e6)
        acc = sum(p == r["label"] for p, r in zip(labels, rows, strict=True)) / len(rows)
        heavy_on_smart = sum(p == "heavy" and r["label"] == "heavy" for p, r in zip(labels, rows, strict=True))
        light_on_fast = sum(p == "light" and r["label"] == "light" for p, r in zip(labels, rows, strict=True))
        print(f"## {name}")
        print(f"accuracy {acc:.1%}; heavy on smart {heavy_on_smart}/{heavy_n} = {heavy_on_smart / heavy_n:.1%}; "
              f"light on fast {light_on_fast}/{len(rows) - heavy_n}; routed to fast {labels.count('light')}/"
              f"{len(rows)}; latency median {statistics.median(times):.0f} µs, "
              f"max {max(times):.0f} µs")
        for p, r in zip(labels, rows, strict=True):
            if p == "light" and r["label"] == "heavy":
                print(f"  heavy sent to fast: {r['question'][:100]}")
        for pair, smart, fast in PAIRS:
            try:
                base = sum(cost(smart, pt, ct) for pt, ct in tokens)
                auto = sum(cost(fast if p == "light" else smart, pt, ct)
                           for p, (pt, ct) in zip(labels, tokens, strict=True))
                oracle = sum(cost(fast if r["label"] == "light" else smart, pt, ct)
                             for r, (pt, ct) in zip(rows, tokens, strict=True))
            except Exception as exc:  # a model missing from LiteLLM's price table
                print(f"  {pair}: not priced ({type(exc).__name__})")
                continue
            print(f"  {pair:32s} always-smart ${base:.4f}  auto ${auto:.4f}  saving {1 - auto / base:.1%} "
                  f"(perfect labels: {1 - oracle / base:.1%})")
        print()


if __name__ == "__main__":
    main()
