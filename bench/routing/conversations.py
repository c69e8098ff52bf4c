"""Routing benchmark over whole conversations: every model call the chat makes, priced always-`smart` vs auto.

    .venv/bin/python bench/routing/conversations.py               # bench/data/routing_conversations.jsonl
    .venv/bin/python bench/routing/conversations.py --recompute   # measure the calls again (~2 minutes)
    .venv/bin/python bench/routing/conversations.py --answer-scale 0.5 | --answer-cap 256   # sensitivities

bench/routing/run.py prices single first-turn questions. A chat is conversations: follow-up turns carry the
history (the previous questions and answers) into the model's input, every follow-up that searches the
knowledge base first has its retrieval query rewritten by the internal tier (`ATRIUM_QUERY_REWRITE=auto` with a
provider `fast` tier), and every conversation gets a title from the internal tier after its first answer
(`ATRIUM_CONVERSATION_TITLES=auto`). This script replays labelled conversations through the real ChatService
(demo corpus ingested as `atrium seed-demo` does, each turn asked by a member of the tenant with the turns before
it as history) and records every model call the pipeline makes — answers, query rewrites — plus the title call
built by ConversationService's own `title_messages`. Only the model is replaced: a recorder keeps the messages
and answers nothing (an empty rewrite makes the pipeline use its deterministic query, as after a failed rewrite).

Token model: input tokens are counted (litellm.token_counter, OpenAI tokenizer, as run.py) on the recorded
messages. Output tokens are ASSUMED: answers by kind of task (run.py's ANSWER_TOKENS, the same for both tiers),
a query rewrite REWRITE_TOKENS, a title TITLE_TOKENS. The history of later turns holds the earlier answers
as the pipeline would see them: text of the assumed answer length made from the passages the turn retrieved
(so the history's size follows the assumption), or the pipeline's own "I don't know" text when no model was
called. A turn the pipeline answers "I don't know" makes no answer call (cost 0 in both arms), though its
query rewrite, if any, was made.

Arms: always-`smart` = every call on `smart` (no cheap tier at all); fixed `smart` = answers on `smart`, the
internal tasks on `fast` (Atrium with `routing: fixed`); auto = answers routed by the classifier of the turn's
message (what the pipeline does), internal tasks on `fast`.
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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import litellm  # noqa: E402
import run as per_question  # noqa: E402  (bench/routing/run.py: answer lengths, price pairs, pricing)
import tokens as measured_tokens  # noqa: E402  (bench/routing/tokens.py: tenants' users and assistants)

from backend.llm.routing import Classification, QueryClassifier, rules_classify  # noqa: E402

DATA = ROOT / "bench" / "data" / "routing_conversations.jsonl"
CACHE = ROOT / "bench" / "data" / "routing_conversation_tokens.json"
REWRITE_TOKENS = 20  # a one-line search query (the rewrite's max_tokens is 64)
TITLE_TOKENS = 8  # 2-6 words (the title's max_tokens is 24)
FILLER = ("The knowledge base does not say more about this, so this answer keeps to what the question itself "
          "gives and says what would be needed to go further. ")


@dataclass
class Call:
    conversation: str
    turn: int  # index of the turn the call belongs to
    what: str  # answer | query_rewrite | title
    label: str  # the turn's label (light | heavy); internal calls: "internal"
    turn_label: str  # the label of the turn the call belongs to (internal calls too)
    message: str
    prompt_tokens: int
    completion_tokens: int


def load(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fingerprint() -> str:
    """The code and data the counts depend on (a change makes every cached run stale)."""
    h = hashlib.sha256(measured_tokens.fingerprint([]).encode())
    h.update(DATA.read_bytes())
    # History rules (the pipeline and what it composes) and the rewrite prompt.
    for module in ("backend/chat/pipeline.py", "backend/chat/admit.py", "backend/chat/retrieve.py",
                   "backend/chat/generate.py", "backend/chat/record.py", "backend/chat/compose.py",
                   "backend/chat/rewrite.py"):
        h.update((ROOT / module).read_bytes())
    from backend.chat.conversations import title_messages
    h.update(inspect.getsource(title_messages).encode() + FILLER.encode())
    return h.hexdigest()[:16]


class _CallRecorder(measured_tokens._RecordingLLM):
    """tokens.py's recorder, keeping every model call of a turn; `fast` counts as a provider tier, so the pipeline
    makes the internal calls (query rewrites) it makes in a provider configuration."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.calls: list[tuple[str, list[dict]]] = []

    def internal_tier(self, allowed: list[str] | None = None) -> str:
        return "fast"

    def internal_model_tier(self, allowed: list[str], mode: str = "auto") -> str | None:
        return None if mode == "off" else "fast"

    def max_output_tokens(self, tier: str) -> None:
        return None

    async def stream(self, *, tier: str, messages: list[dict], **kw: Any) -> AsyncIterator[Any]:
        self.calls.append((tier, messages))
        async for item in super().stream(tier=tier, messages=messages, **kw):
            yield item


def _answer_text(n_tokens: int, source: str) -> str:
    """Text of exactly n_tokens tokens (the tokenizer's), in the words of the passages the answer draws on."""
    if n_tokens <= 0:
        return ""
    base = litellm.encode(model=measured_tokens.TOKENIZER, text=(source.strip() or FILLER) + " ")
    ids = (base * (n_tokens // max(1, len(base)) + 1))[:n_tokens]
    return litellm.decode(model=measured_tokens.TOKENIZER, tokens=ids).strip()


async def _measure(conversations: list[dict], answer_tokens: dict[str, int]) -> list[dict]:
    from backend.chat.conversations import title_messages
    from backend.chat.rewrite import SYSTEM as REWRITE_SYSTEM
    from backend.chat.types import ChatRequest
    from backend.container import build_services
    from backend.seed import seed_demo
    from backend.settings import Settings

    def count(messages: list[dict]) -> int:
        return litellm.token_counter(model=measured_tokens.TOKENIZER, messages=messages)

    for name in measured_tokens._EXTERNAL_ENV:
        os.environ.pop(name, None)
    out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(ATRIUM_DATA_DIR=tmp, ATRIUM_INGEST_WORKER="false",
                                           ATRIUM_QUERY_REWRITE="auto", ATRIUM_CONVERSATION_TITLES="auto"))
        try:
            with contextlib.redirect_stdout(sys.stderr):
                assert seed_demo(services) == 0, "seed-demo failed"
            chat = services.chat
            recorder = _CallRecorder(chat.llm)
            chat.llm, chat.rewriter.llm = recorder, recorder  # type: ignore[assignment]
            chat.quotas, chat.turn_cache.cache = None, None
            for conv in conversations:
                tenant = conv["tenant"]
                sub, name = measured_tokens.USER[tenant]
                principal = services.principal_from_claims({"sub": sub, "name": name, "groups": [tenant]})
                history: list[dict[str, str]] = []
                turns = []
                for i, turn in enumerate(conv["turns"]):
                    recorder.calls = []
                    # tier "smart": a provider tier, so the history is passed as in a provider configuration
                    # (the in-process model gets the last exchange only); both arms see the same input.
                    result = await chat.run(principal, ChatRequest(
                        tenant=tenant, assistant=measured_tokens.ASSISTANT[tenant], message=turn["message"],
                        history=list(history), tier="smart", record=False))
                    rewrite = [count(m) for _, m in recorder.calls if m[0]["content"] == REWRITE_SYSTEM]
                    answer = [count(m) for _, m in recorder.calls if m[0]["content"] != REWRITE_SYSTEM]
                    assert len(answer) <= 1 and len(rewrite) <= 1, (conv["id"], i, len(recorder.calls))
                    if answer:
                        text = _answer_text(answer_tokens[turn["kind"]],
                                            " ".join(c.quote for c in result.citations) or turn["message"])
                    else:  # answered "I don't know" without a model call: that text is the history
                        text = result.answer
                    row = {"answer_in": answer[0] if answer else 0, "rewrite_in": rewrite[0] if rewrite else 0,
                           "passages": len(result.citations)}
                    if i == 0:
                        row["title_in"] = count(title_messages(turn["message"], text))
                    turns.append(row)
                    history += [{"role": "user", "content": turn["message"]}, {"role": "assistant", "content": text}]
                out.append({"id": conv["id"], "turns": turns})
        finally:
            services.close()
    return out


def measured(conversations: list[dict], answer_tokens: dict[str, int], *, recompute: bool) -> list[dict]:
    """Cached per assumed answer lengths (they shape the history); runs of older code are dropped."""
    fp, lengths = _fingerprint(), json.dumps(answer_tokens, sort_keys=True)
    cached = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    runs = cached.get("runs", {}) if cached.get("fingerprint") == fp else {}
    if recompute or lengths not in runs:
        print(f"measuring the model calls of {len(conversations)} conversations through the chat pipeline ...",
              file=sys.stderr)
        runs[lengths] = asyncio.run(_measure(conversations, answer_tokens))
        CACHE.write_text(json.dumps({"fingerprint": fp, "tokenizer": measured_tokens.TOKENIZER, "runs": runs},
                                    indent=0) + "\n")
    return runs[lengths]


def calls_of(conversations: list[dict], counts: list[dict], answer_tokens: dict[str, int]) -> list[Call]:
    calls: list[Call] = []
    for conv, measured_conv in zip(conversations, counts, strict=True):
        assert conv["id"] == measured_conv["id"]
        for i, (turn, m) in enumerate(zip(conv["turns"], measured_conv["turns"], strict=True)):
            if m["rewrite_in"]:
                calls.append(Call(conv["id"], i, "query_rewrite", "internal", turn["label"], turn["message"],
                                  m["rewrite_in"], REWRITE_TOKENS))
            if m["answer_in"]:
                calls.append(Call(conv["id"], i, "answer", turn["label"], turn["label"], turn["message"],
                                  m["answer_in"], answer_tokens[turn["kind"]]))
            if "title_in" in m:
                calls.append(Call(conv["id"], i, "title", "internal", turn["label"], turn["message"], m["title_in"],
                                  TITLE_TOKENS))
    return calls


WEIGHT = {"light": 1.0, "heavy": 1.0}  # --light-share reweights the turns (and their internal calls)


def spend(calls: list[Call], tier_of: Callable[[Call], str], smart: str, fast: str) -> float:
    return sum(WEIGHT[c.turn_label] * per_question.cost(smart if tier_of(c) == "smart" else fast, c.prompt_tokens,
                                                        c.completion_tokens) for c in calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--answer-scale", type=float, default=1.0, help="multiply the assumed answer lengths")
    ap.add_argument("--answer-cap", type=int, default=0, help="cap answers at this many tokens (max_tokens)")
    ap.add_argument("--light-share", type=float, default=None,
                    help="sensitivity: weight the turns so that this share of them is light (e.g. 0.55)")
    args = ap.parse_args()
    conversations = load(args.data)
    answer_tokens = {k: round(v * args.answer_scale) for k, v in per_question.ANSWER_TOKENS.items()}
    if args.answer_cap:
        answer_tokens = {k: min(v, args.answer_cap) for k, v in answer_tokens.items()}
    calls = calls_of(conversations, measured(conversations, answer_tokens, recompute=args.recompute), answer_tokens)

    turns = [(c["id"], i, t) for c in conversations for i, t in enumerate(c["turns"])]
    heavy_turns = [t for t in turns if t[2]["label"] == "heavy"]
    # As the pipeline routes a follow-up: its message, with the user's message before it.
    previous = {(c["id"], i): c["turns"][i - 1]["message"] if i else None
                for c in conversations for i in range(len(c["turns"]))}
    if args.light_share is not None:
        n_light = len(turns) - len(heavy_turns)
        WEIGHT["light"] = args.light_share * len(heavy_turns) / ((1 - args.light_share) * n_light)
        print(f"--light-share {args.light_share}: light turns (and their internal calls) weighted "
              f"{WEIGHT['light']:.3f}, heavy 1 (the file's light share is {n_light / len(turns):.1%})")
    model = QueryClassifier.load()
    classifiers: dict[str, Callable[[str], Classification] | None] = {
        "logistic model (shipped)": model.classify, "keyword rules": rules_classify, "perfect labels": None}
    routed: dict[str, dict[tuple[str, int], str]] = {}
    answered = {(c.conversation, c.turn) for c in calls if c.what == "answer"}
    print(f"{len(conversations)} conversations, {len(turns)} turns ({len(heavy_turns)} heavy), "
          f"{len(turns) - len(answered)} turns answered without an answer call; model calls: "
          + ", ".join(f"{w} {sum(c.what == w for c in calls)}" for w in ("answer", "query_rewrite", "title"))
          + f"\nanswer tokens by kind x{args.answer_scale}" + (f", capped at {args.answer_cap}" if args.answer_cap
                                                                 else "") + "\n")
    for name, classify in classifiers.items():
        routed[name] = {(cid, i): classify(t["message"], previous[(cid, i)]).label if classify else t["label"]
                        for cid, i, t in turns}
        labels = routed[name]
        hos = sum(labels[(cid, i)] == "heavy" for cid, i, _ in heavy_turns)
        hos_called = [(cid, i) for cid, i, _ in heavy_turns if (cid, i) in answered]
        follow = [(cid, i) for cid, i, _ in heavy_turns if i > 0]
        light_ok = sum(labels[(cid, i)] == "light" for cid, i, t in turns if t["label"] == "light")
        print(f"## {name}: heavy on smart {per_question.pct(hos, len(heavy_turns))} (follow-up turns "
              f"{per_question.pct(sum(labels[k] == 'heavy' for k in follow), len(follow))}; turns that reach a model "
              f"{per_question.pct(sum(labels[k] == 'heavy' for k in hos_called), len(hos_called))}); light on fast "
              f"{per_question.pct(light_ok, len(turns) - len(heavy_turns))}")
        if name.endswith("(shipped)"):
            for cid, i, t in heavy_turns:
                if labels[(cid, i)] == "light":
                    print(f"  heavy sent to fast ({cid} turn {i + 1}, {t['kind']}): {t['message'][:100]}")

    shipped = routed["logistic model (shipped)"]
    hos = sum(shipped[(cid, i)] == "heavy" for cid, i, _ in heavy_turns) / len(heavy_turns)
    ok = hos >= per_question.GOAL_HEAVY_ON_SMART
    answers = [c for c in calls if c.what == "answer"]
    print("\n| pair (smart / fast) | always-smart | fixed smart (internal on fast) | auto (shipped model) | saving "
          "| of it: internal calls | answers only | keyword rules | perfect labels | light + internal share of "
          "spend | goal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for pair, smart, fast in per_question.PAIRS:
        def auto(c: Call, labels: dict[tuple[str, int], str] = shipped) -> str:
            return "smart" if c.what == "answer" and labels[(c.conversation, c.turn)] == "heavy" else "fast"
        try:
            base = spend(calls, lambda c: "smart", smart, fast)
        except Exception as exc:  # a model missing from LiteLLM's price table
            print(f"| {pair} | not priced ({type(exc).__name__}) |" + " |" * 10)
            continue
        fixed = spend(calls, lambda c: "smart" if c.what == "answer" else "fast", smart, fast)
        routed_spend = spend(calls, auto, smart, fast)
        rules = spend(calls, lambda c: auto(c, routed["keyword rules"]), smart, fast)
        oracle = spend(calls, lambda c: auto(c, routed["perfect labels"]), smart, fast)
        answers_base = spend(answers, lambda c: "smart", smart, fast)
        answers_auto = spend(answers, auto, smart, fast)
        light = spend([c for c in calls if c.label != "heavy"], lambda c: "smart", smart, fast)
        saving = 1 - routed_spend / base
        goal = "met" if saving >= per_question.GOAL_SAVING and ok else "not met"
        print(f"| {pair} | ${base:.4f} | ${fixed:.4f} | ${routed_spend:.4f} | **{saving:.1%}** | "
              f"{1 - fixed / base:.1%} | {1 - answers_auto / answers_base:.1%} | {1 - rules / base:.1%} | "
              f"{1 - oracle / base:.1%} | {light / base:.1%} | {goal} |")
    print("\nsaving = 1 - auto / always-smart; 'of it: internal calls' = the part fixed smart already saves by "
          "putting query rewrites and titles on fast; 'answers only' = the answer calls alone, as run.py")


if __name__ == "__main__":
    main()
