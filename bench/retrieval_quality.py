"""Retrieval quality on the demo corpus: recall@5 of the labelled questions (bench/data/retrieval_questions.jsonl),
dense vs hybrid, and where to put the relevance threshold for "I don't know" (top-1 scores of answerable
questions vs other departments' questions).

    .venv/bin/python bench/retrieval_quality.py        # ~1 minute on 2 CPU cores
    .venv/bin/python bench/retrieval_quality.py --store pgvector   # the same on PostgreSQL + pgvector (pgserver)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.auth.principal import MEMBER, Principal  # noqa: E402
from backend.container import build_services  # noqa: E402
from backend.knowledge.cli import ingest_paths  # noqa: E402
from backend.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["sqlite", "pgvector"], default="sqlite")
    parser.add_argument("--pgvector-url", help="admin URL of a PostgreSQL with pgvector (default: start pgserver)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        env = {}
        if args.store == "pgvector":
            from bench.pgvector_server import pgvector_database

            env = {"DATABASE_URL": stack.enter_context(pgvector_database(args.pgvector_url))}
        run(args.store, env)


def run(store: str, env: dict[str, str]) -> None:
    questions = [json.loads(line) for line in (REPO / "bench/data/retrieval_questions.jsonl").read_text().splitlines()
                 if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(ATRIUM_DATA_DIR=tmp, ATRIUM_INGEST_WORKER="false", **env))
        assert services.knowledge.store.name == store
        for tenant in ("sales", "engineering", "finance"):
            paths = [str(p) for p in sorted((REPO / "demo/corpus" / tenant).glob("*.md"))]
            with contextlib.redirect_stdout(sys.stderr):
                assert ingest_paths(services, tenant=tenant, paths=paths, kb="default") == 0
        kb = services.knowledge
        titles = {}
        for tenant in ("sales", "engineering", "finance"):
            for d in kb.list_documents(Principal(subject="b", name="b", tenants={tenant: frozenset({MEMBER})}), tenant):
                titles[d["id"]] = d["filename"]
        results = {}
        for mode in ("dense", "hybrid"):
            kb.retrieval.mode = mode
            hits_doc = hits_answer = answerable = 0
            top_scores_in, top_scores_out, decisions = [], [], []
            for q in questions:
                principal = Principal(subject="bench", name="b", tenants={q["tenant"]: frozenset({MEMBER})})
                hits = asyncio.run(kb.search(principal, q["tenant"], q["question"], top_k=5))
                # The chat answers when any retrieved passage reaches the threshold: judge by the best one.
                top = max((h.score for h in hits), default=0.0)
                # what the chat does: answer from the relevant passages, or say "I don't know"
                answered = bool(asyncio.run(kb.retrieve(principal=principal, tenant=q["tenant"], query=q["question"])))
                decisions.append((q.get("doc") is not None, answered))
                if q.get("doc") is None:
                    top_scores_out.append(top)
                    continue
                answerable += 1
                top_scores_in.append(top)
                hits_doc += any(titles.get(h.document_id) == q["doc"] for h in hits)
                hits_answer += any(q["answer_contains"] in h.text for h in hits)
            results[mode] = {"answerable": answerable, "unanswerable": len(top_scores_out),
                             "recall@5 (doc)": round(hits_doc / answerable, 3),
                             "recall@5 (passage)": round(hits_answer / answerable, 3),
                             "best score, answerable p10/median": (round(_pct(top_scores_in, 10), 3),
                                                            round(statistics.median(top_scores_in), 3)),
                             "best score, other-dept median/p90/max": (round(statistics.median(top_scores_out), 3),
                                                                round(_pct(top_scores_out, 90), 3),
                                                                round(max(top_scores_out), 3))}
            answerable_ok = [ok for has_doc, ok in decisions if has_doc]
            refused_ok = [not ok for has_doc, ok in decisions if not has_doc]
            results[mode][f"chat decision (min score {kb.min_score} + keyword coverage): answered / I don't know"] = (
                round(sum(answerable_ok) / len(answerable_ok), 3), round(sum(refused_ok) / len(refused_ok), 3))
            for threshold in (0.3, 0.35, 0.4, 0.45, 0.5):
                kept = sum(s >= threshold for s in top_scores_in) / len(top_scores_in)
                refused = sum(s < threshold for s in top_scores_out) / len(top_scores_out)
                results[mode][f"threshold {threshold}: answered / says I don't know"] = (round(kept, 3),
                                                                                        round(refused, 3))
        services.close()
    out = REPO / f"bench/results/knowledge-quality{'' if store == 'sqlite' else '-' + store}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for mode, values in results.items():
        print(f"== {mode} ({store})")
        for key, value in values.items():
            print(f"   {key}: {value}")


def _pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


if __name__ == "__main__":
    main()
