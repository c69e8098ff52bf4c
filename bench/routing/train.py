"""Train the auto-routing classifier (backend/llm/routing.py) and write backend/llm/routing_model.json.

    .venv/bin/python bench/routing/train.py

Training data: bench/data/routing_questions.jsonl only. C and the decision threshold are chosen by
stratified 5-fold cross-validation on it (the threshold is the highest one keeping cross-validated heavy
recall >= TARGET_RECALL); the holdout sets (routing_questions_holdout*.jsonl) are never looked at here
(bench/routing/run.py evaluates on them).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from backend.llm.routing import MODEL_PATH, features  # noqa: E402

TARGET_RECALL = 0.98  # a margin over the 95% goal: the holdout is small
DATA = ROOT / "bench" / "data" / "routing_questions.jsonl"


def load(path: Path) -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows], np.array([1 if r["label"] == "heavy" else 0 for r in rows])


def cv_scores(texts: list[str], y: np.ndarray, c: float) -> np.ndarray:
    """Out-of-fold P(heavy) for every training question."""
    out = np.zeros(len(y))
    for seed in range(3):
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, y):
            vec = DictVectorizer()
            x = vec.fit_transform([features(texts[i]) for i in train])
            clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y[train])
            out[test] += clf.predict_proba(vec.transform([features(texts[i]) for i in test]))[:, 1] / 3
    return out


def pick_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Highest threshold with heavy recall >= TARGET_RECALL; returns (threshold, recall, light share)."""
    best = (0.05, 1.0, 0.0)
    for t in np.arange(0.05, 0.95, 0.01):
        recall = float(((p >= t) & (y == 1)).sum() / (y == 1).sum())
        if recall >= TARGET_RECALL:
            best = (round(float(t), 2), recall, float((p < t).mean()))
    return best


def main() -> None:
    texts, y = load(DATA)
    results = []
    for c in (0.3, 1.0, 3.0, 10.0):
        p = cv_scores(texts, y, c)
        t, recall, light = pick_threshold(p, y)
        acc = float(((p >= 0.5) == (y == 1)).mean())
        results.append((light, c, t, recall, acc))
        print(f"C={c:<5} cv accuracy@0.5={acc:.3f}  threshold={t:.2f} heavy recall={recall:.3f} "
              f"routed light={light:.3f}")
    # Most questions routed light at the recall target; ties go to the most moderate regularisation.
    light, c, t, recall, _ = max(results, key=lambda r: (round(r[0], 3), -abs(math.log10(r[1]))))
    vec = DictVectorizer()
    x = vec.fit_transform([features(s) for s in texts])
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
    weights = {name: round(float(w), 5) for name, w in zip(vec.get_feature_names_out(), clf.coef_[0], strict=True)
               if abs(w) >= 1e-4}
    MODEL_PATH.write_text(json.dumps({
        "version": f"lr-C{c}-t{t}", "threshold": t, "trained_on": DATA.name, "cv_heavy_recall": round(recall, 3),
        "weights": dict(sorted(weights.items())),
    }, indent=0, ensure_ascii=False) + "\n")
    print(f"chose C={c} threshold={t}; {len(weights)} weights -> {MODEL_PATH.relative_to(ROOT)} "
          f"({MODEL_PATH.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
