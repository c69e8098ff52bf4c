"""Answer quality and time to first token, by answer mode, on the labelled answer set (bench/data/answer_facts.jsonl).

    .venv/bin/python bench/grounded_answers.py [--modes generative,grounded,checked,mock] [--limit N]

In-process (ChatService.stream, as every channel calls it), on the demo corpus seeded into a fresh data dir:
- `generative`: the in-process SmolLM2-135M writes the answer from the passages (the previous default);
- `grounded`: the passages' own statements (the default for the in-process model);
- `checked`: the in-process model's answer through the grounding check;
- `mock`: the grounding check over a mock provider on the `local` tier that answers every question with one true
  statement (a passage's statement, reworded at its start) and one invented one (the same statement with its
  numbers changed, or a plausible rule no passage states); measured: invented sentences caught, true ones kept.
Per answer: all expected facts stated (outside struck-through text), unsupported sentences shown as fact (the
grounding checker's verdict on what is shown unmarked), time to first token and to the whole answer. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.chat.answers import FALLBACK_NOTE  # noqa: E402
from backend.chat.grounded import grounded_answer  # noqa: E402
from backend.chat.grounding_check import check_answer  # noqa: E402
from backend.chat.passage_units import split_sentences  # noqa: E402
from backend.chat.types import ChatRequest, TurnResult  # noqa: E402
from tests.knowledge.conftest import member_of  # noqa: E402

LABELS = ROOT / "bench" / "data" / "answer_facts.jsonl"
STRUCK = re.compile(r"~~.*?~~ _\(not supported by the cited sources\)_")
RULES = ["Exceptions to this rule are decided case by case by the regional office manager.",
         "This rule does not apply to contractors hired through an agency."]


class MockModel:
    """An OpenAI-compatible chat-completions server streaming `self.text` word by word (a self-hosted model)."""

    def __init__(self) -> None:
        self.text = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                base = {"id": "c", "object": "chat.completion.chunk", "created": int(time.time()), "model": "mock"}
                words = outer.text.split(" ")
                for i, word in enumerate(words):
                    delta = {"content": word + ("" if i == len(words) - 1 else " ")}
                    chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 100, "completion_tokens": len(words), "total_tokens": 100}}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def config_dir(root: Path, *, answers: dict, model_list: list | None = None) -> Path:
    cfg = root / "config"
    shutil.rmtree(cfg, ignore_errors=True)
    shutil.copytree(ROOT / "config", cfg)
    models = yaml.safe_load((cfg / "models.yaml").read_text())
    models["answers"] = answers
    if model_list is not None:
        models["model_list"] = model_list
        models["prices"] = {**models.get("prices", {}), "openai/mock-local": {"input_cost_per_token": 0.0,
                                                                             "output_cost_per_token": 0.0}}
    (cfg / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    return cfg


def services(root: Path, **kw: object):
    from backend.container import build_services
    from backend.settings import Settings

    return build_services(Settings(ATRIUM_DATA_DIR=str(root / "data"),  # type: ignore[call-arg]
                                   ATRIUM_CONFIG_DIR=str(config_dir(root, **kw))))


async def ask(svc, q: dict) -> dict:
    req = ChatRequest(tenant=q["tenant"], assistant=q["assistant"], message=q["question"], channel="api")
    start, first, shown, result = time.perf_counter(), None, [], None
    async for item in svc.chat.stream(member_of(q["tenant"]), req):
        if isinstance(item, TurnResult):
            result = item
        else:
            first = first or time.perf_counter() - start
            shown.append(item)
    assert result is not None
    return {"answer": result.answer, "first_token_s": first, "total_s": time.perf_counter() - start,
            "citations": result.citations, "grounding": result.grounding or {}}


def as_fact(answer: str) -> str:
    """What an answer states as fact: without struck-through sentences and the note before the sources' answer."""
    return STRUCK.sub("", answer).replace(FALLBACK_NOTE, "\n\n")


def score(svc, questions: list[dict], runs: list[dict]) -> dict:
    embed = svc.chat.answers.embed
    facts_ok, unsupported, counted, idk_ok = 0, 0, 0, 0
    answerable = [(q, r) for q, r in zip(questions, runs, strict=True) if not q.get("no_answer")]
    for q, r in answerable:
        text = as_fact(r["answer"])
        facts_ok += all(re.search(f, text, re.I) for f in q["facts"])
        check = check_answer(text, r["citations"], embed, question=q["question"])
        unsupported += len(check.unsupported)
        counted += len(check.counted)
    for q, r in zip(questions, runs, strict=True):
        if q.get("no_answer"):
            idk_ok += r["answer"].startswith("I don't know")
    firsts = [r["first_token_s"] for r in runs if r["first_token_s"] is not None]
    return {"answers": len(answerable), "all_facts_stated": round(facts_ok / len(answerable), 3),
            "unsupported_sentences_shown_as_fact": round(unsupported / max(counted, 1), 3),
            "sentences": counted, "no_answer_kept": f"{idk_ok}/{len(questions) - len(answerable)}",
            "fell_back": sum(r["grounding"].get("mode") == "fallback" for r in runs),
            "first_token_median_s": round(statistics.median(firsts), 2),
            "first_token_max_s": round(max(firsts), 2),
            "total_median_s": round(statistics.median(r["total_s"] for r in runs), 2)}


async def scripted(svc, q: dict, i: int) -> tuple[str, str]:
    """One true sentence (a passage's sentence stating an expected fact, reworded at its start) and one invented
    one (a passage's sentence with its numbers changed, or a plausible rule no passage states)."""
    cits = await svc.knowledge.retrieve(principal=member_of(q["tenant"]), tenant=q["tenant"], query=q["question"])
    g = grounded_answer(q["question"], cits, svc.chat.answers.embed)
    lines = [re.sub(r"^- |\s*\[\d+\]$", "", s).strip() for s in re.split(r"\n+", g.text)] if g else ["?"]
    sentences = [s.rstrip(".") + "." for line in lines for s in split_sentences(line)]
    true = next((s for s in sentences if any(re.search(f, s, re.I) for f in q["facts"])), sentences[0])
    numeric = next((s for s in sentences if re.search(r"\d", s) and s != true), None)
    if numeric is not None:
        invented = re.sub(r"\d+", lambda m: str(int(m.group(0)) * 2 + 3), numeric)
    else:
        invented = RULES[i % len(RULES)]
    return "In short: " + true[0].lower() + true[1:], invented


async def run_mock(root: Path, questions: list[dict]) -> dict:
    mock = MockModel()
    model_list = [{"model_name": "local", "litellm_params": {"model": "openai/mock-local", "api_base": mock.url,
                                                             "api_key": "sk-mock"}}]
    out = {}
    for name, check in (("mock_checked", True), ("mock_unchecked", False)):
        svc = services(root, answers={"local": {"mode": "generative", "grounding_check": check}},
                       model_list=model_list)
        try:
            caught = kept = n = 0
            runs = []
            for i, q in enumerate(q for q in questions if not q.get("no_answer")):
                true, invented = await scripted(svc, q, i)
                mock.text = f"{true} {invented}"
                r = await ask(svc, q)
                runs.append(r)
                shown = re.sub(r" \[\d+\]", "", as_fact(r["answer"]))  # the [n] markers the check adds left out
                n += 1
                caught += invented not in shown
                kept += true in shown
            firsts = [r["first_token_s"] for r in runs if r["first_token_s"] is not None]
            out[name] = {"answers": n, "invented_sentences_caught": round(caught / n, 3),
                         "true_sentences_kept": round(kept / n, 3),
                         "fell_back": sum(r["grounding"].get("mode") == "fallback" for r in runs),
                         "first_token_median_s": round(statistics.median(firsts), 3),
                         "total_median_s": round(statistics.median(r["total_s"] for r in runs), 3)}
        finally:
            svc.close()
    mock.server.shutdown()
    return out


MODES = {"generative": {"local": {"mode": "generative", "grounding_check": False}},
         "grounded": {"local": {"mode": "grounded"}},
         "checked": {"local": {"mode": "generative", "grounding_check": True}}}


async def main(modes: list[str], limit: int | None) -> dict:
    questions = [json.loads(line) for line in LABELS.read_text().splitlines() if line.strip()][:limit]
    results: dict = {"questions": len(questions)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from backend.seed import seed_demo

        svc = services(root, answers=MODES["grounded"])
        with contextlib.redirect_stdout(io.StringIO()):
            seed_demo(svc)
        # warm: the embedder and the in-process model load once, outside the measures
        await ask(svc, questions[0])
        await ask(svc, {**questions[0], "question": "hi!"})
        svc.close()
        for mode in modes:
            if mode == "mock":
                results.update(await run_mock(root, questions))
                continue
            svc = services(root, answers=MODES[mode])
            try:
                svc.chat.turn_cache.cache = None  # every question answered, none served from the cache
                runs = [await ask(svc, q) for q in questions]
                results[mode] = score(svc, questions, runs)
                results[mode]["samples"] = {q["question"]: r["answer"][:300] for q, r in
                                            list(zip(questions, runs, strict=True))[:3]}
            finally:
                svc.close()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="generative,grounded,checked,mock")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.modes.split(","), args.limit)), indent=2))
