"""The shipped routing model against issue 6's quality bar, on the labelled holdout (never used in training)."""

from __future__ import annotations

import json
from pathlib import Path

from backend.llm.routing import QueryClassifier

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def test_shipped_model_keeps_at_least_95_percent_of_holdout_heavy_questions_on_smart() -> None:
    model = QueryClassifier.load()
    heavy = [r for name in ("routing_questions_holdout.jsonl", "routing_questions_holdout2.jsonl")
             for r in _rows(name) if r["label"] == "heavy"]
    assert len(heavy) >= 100  # one miss must move the share by less than 1 point
    on_smart = sum(model.classify(r["question"]).label == "heavy" for r in heavy)
    assert on_smart / len(heavy) >= 0.95, f"{on_smart}/{len(heavy)} heavy questions routed to smart"


def test_holdout_questions_are_not_in_the_training_set() -> None:
    train = {r["question"].strip().lower() for r in _rows("routing_questions.jsonl")}
    for name in ("routing_questions_holdout.jsonl", "routing_questions_holdout2.jsonl"):
        assert not [r["question"] for r in _rows(name) if r["question"].strip().lower() in train]
