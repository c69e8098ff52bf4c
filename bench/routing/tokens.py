"""Input tokens per question, measured through the real chat pipeline (bench/routing/run.py prices them).

    .venv/bin/python bench/routing/tokens.py [--recompute]     # ~1 minute: ingests demo/corpus, asks 510 questions

For every labelled question: the demo corpus is ingested into a throwaway data dir (what `atrium seed-demo`
does), and the question is asked through ChatService.stream as a member of its tenant, to the tenant's
assistant, as a first turn (top_k=5, retrieval, "I don't know" when nothing relevant is found, system prompt
rendered with the retrieved passages). Only the model call is replaced: a recorder keeps the messages the
pipeline would send and answers nothing. Input tokens = litellm.token_counter of those messages; a question
the pipeline answers with "I don't know" makes no model call and is recorded as 0 tokens (cost 0 in both
arms). Quotas and the response cache are switched off: they decide whether a turn runs, not what it sends.

The counts are cached in bench/data/routing_tokens.json with a fingerprint of everything they depend on
(corpus, prompts, retrieval settings, questions, the context formatting); run.py recomputes when it changed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / "data" / "routing_tokens.json"
DATA_FILES = sorted((ROOT / "bench" / "data").glob("routing_questions*.jsonl"))
ASSISTANT = {"sales": "sales-assistant", "engineering": "eng-assistant", "finance": "finance-assistant"}
# A demo member of each tenant (config/demo_users.yaml): the prompt's {{user_name}} is their name.
USER = {"sales": ("alice", "Alice Adams"), "engineering": ("erin", "Erin Evans"), "finance": ("fiona", "Fiona Fox")}
# LiteLLM's token_counter uses the OpenAI tokenizer for every model priced here (Claude and Gemini included);
# both tiers of a pair see the same count, so the tokenizer moves absolute dollars, hardly the saving.
TOKENIZER = "gpt-4o"
# Settings that point at shared servers: the measurement always runs on embedded, throwaway stores.
_EXTERNAL_ENV = ("DATABASE_URL", "REDIS_URL", "VECTOR_STORE")


def key(row: dict) -> str:
    return hashlib.sha256(f"{row['tenant']}\n{row['question']}".encode()).hexdigest()[:16]


def load_rows(paths: list[Path] = DATA_FILES) -> list[dict]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]


def fingerprint(rows: list[dict]) -> str:
    """Everything the counts depend on; a change means the cache is stale."""
    from backend.chat.pipeline import NO_CONTEXT, _format_context
    from backend.settings import Settings

    s = Settings()
    h = hashlib.sha256()
    for path in sorted((ROOT / "demo" / "corpus").rglob("*")) + sorted((ROOT / "prompts").rglob("*")):
        if path.is_file():
            h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    h.update(json.dumps([s.embedding_model, s.retrieval_mode, s.retrieval_min_score, s.chunk_tokens,
                         s.chunk_overlap, TOKENIZER]).encode())
    h.update((inspect.getsource(_format_context) + NO_CONTEXT).encode())
    for module in ("backend/llm/knowledge_need.py", "backend/llm/routing.py",  # which messages skip retrieval
                   "backend/knowledge/chunk.py", "backend/knowledge/pieces.py", "backend/knowledge/parse.py",
                   "backend/knowledge/blocks.py", "backend/knowledge/embed/local.py"):  # the passages themselves
        h.update((ROOT / module).read_bytes())
    h.update("".join(sorted(key(r) for r in rows)).encode())
    return h.hexdigest()[:16]


class _RecordingLLM:
    """The real LLMService, except that a model call records its messages and returns an empty answer."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.messages: list[dict] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def resolve_tier(self, wanted: str, allowed: list[str]) -> str:
        return wanted  # no provider key is needed to see what would be sent

    async def stream(self, *, tier: str, messages: list[dict], **_: Any) -> AsyncIterator[Any]:
        from backend.llm.service import Completion, Delta

        self.messages = messages
        yield Delta("")
        yield Completion(text="", model="recorder", tier=tier, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)


async def _measure(rows: list[dict]) -> dict[str, dict[str, int]]:
    import litellm

    from backend.chat.pipeline import NO_ANSWER
    from backend.chat.types import ChatRequest
    from backend.container import build_services
    from backend.seed import seed_demo
    from backend.settings import Settings

    for name in _EXTERNAL_ENV:
        os.environ.pop(name, None)
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(ATRIUM_DATA_DIR=tmp, ATRIUM_INGEST_WORKER="false"))
        try:
            with contextlib.redirect_stdout(sys.stderr):
                assert seed_demo(services) == 0, "seed-demo failed"
            chat = services.chat
            recorder = _RecordingLLM(chat.llm)
            chat.llm, chat.quotas, chat.turn_cache.cache = recorder, None, None  # type: ignore[assignment]
            for row in rows:
                tenant = row["tenant"]
                sub, name = USER[tenant]
                principal = services.principal_from_claims({"sub": sub, "name": name, "groups": [tenant]})
                recorder.messages = None
                result = await chat.run(principal, ChatRequest(tenant=tenant, assistant=ASSISTANT[tenant],
                                                               message=row["question"], record=False))
                if recorder.messages is None:  # the pipeline answered without a model call
                    assert result.answer.startswith(NO_ANSWER.split("—")[0]), result.answer[:80]
                    out[key(row)] = {"prompt_tokens": 0, "passages": 0}
                else:
                    out[key(row)] = {"prompt_tokens": litellm.token_counter(model=TOKENIZER,
                                                                            messages=recorder.messages),
                                     "passages": len(result.citations)}
        finally:
            services.close()
    return out


def prompt_tokens(rows: list[dict], *, recompute: bool = False) -> dict[str, dict[str, int]]:
    """key(row) -> {"prompt_tokens", "passages"} for every row (0 tokens = "I don't know", no model call)."""
    every = load_rows()
    fp = fingerprint(every)
    cached = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    if recompute or cached.get("fingerprint") != fp or any(key(r) not in cached.get("rows", {}) for r in rows):
        print(f"measuring input tokens through the chat pipeline for {len(every)} questions "
              f"({'--recompute' if recompute else 'cache missing or stale'}) ...", file=sys.stderr)
        measured = asyncio.run(_measure(every))
        cached = {"fingerprint": fp, "tokenizer": TOKENIZER, "rows": dict(sorted(measured.items()))}
        CACHE.write_text(json.dumps(cached, indent=0) + "\n")
    return cached["rows"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recompute", action="store_true", help="measure again even if the cache is fresh")
    args = ap.parse_args()
    rows = load_rows()
    counts = prompt_tokens(rows, recompute=args.recompute)
    answered = sorted(counts[key(r)]["prompt_tokens"] for r in rows if counts[key(r)]["prompt_tokens"])
    print(f"{len(rows)} questions: {len(answered)} reach the model, {len(rows) - len(answered)} answered "
          f"\"I don't know\" (no model call); input tokens when called: median "
          f"{answered[len(answered) // 2]}, min {answered[0]}, max {answered[-1]}")
    kinds: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        kinds.setdefault((r["label"], r["kind"]), []).append(counts[key(r)]["prompt_tokens"])
    for (label, kind), values in sorted(kinds.items()):
        reached = sorted(v for v in values if v)
        print(f"  {label:5s} {kind:9s} reach the model {len(reached):3d}/{len(values):3d}"
              + (f", median input {reached[len(reached) // 2]} tokens" if reached else ""))


if __name__ == "__main__":
    main()
