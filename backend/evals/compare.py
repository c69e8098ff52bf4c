"""Two runs side by side (a draft against production, the same version on `fast` and on `smart`): score, cost and
latency of each, and every case that passed in one and failed in the other, with both answers.

A view, not a verdict: whether a change regresses (the release gate's refusal, `atrium eval run`'s exit 1) is
gate.regressions' decision alone, over the current case set."""

from __future__ import annotations

from typing import Any


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 6)


def compare_runs(a: dict[str, Any], b: dict[str, Any], results_a: list[dict[str, Any]],
                 results_b: list[dict[str, Any]]) -> dict[str, Any]:
    by_a = {r["case_id"]: r for r in results_a}
    by_b = {r["case_id"]: r for r in results_b}
    both = [c for c in by_a if c in by_b]
    changed = []
    for case_id in both:
        ra, rb = by_a[case_id], by_b[case_id]
        if ra["passed"] != rb["passed"]:
            changed.append({"case": case_id, "question": rb.get("question") or ra.get("question"),
                            "direction": "fixed" if rb["passed"] else "regressed", "a": ra, "b": rb})
    # On the cases both runs answered, so that a run stopped half-way is not compared on what it never did.
    passed_a = sum(1 for c in both if by_a[c]["passed"])
    passed_b = sum(1 for c in both if by_b[c]["passed"])
    return {
        "a": a, "b": b, "changed": changed,
        "regressed": [c["case"] for c in changed if c["direction"] == "regressed"],
        "fixed": [c["case"] for c in changed if c["direction"] == "fixed"],
        "common": len(both),
        "only_in_a": sorted(set(by_a) - set(by_b)), "only_in_b": sorted(set(by_b) - set(by_a)),
        "score": {"a": round(passed_a / len(both), 4) if both else None,
                  "b": round(passed_b / len(both), 4) if both else None,
                  "delta": round((passed_b - passed_a) / len(both), 4) if both else None},
        "cost_usd": {"a": a["cost_usd"], "b": b["cost_usd"], "delta": _delta(a["cost_usd"], b["cost_usd"])},
        "latency_ms": {"a": a["latency_ms"], "b": b["latency_ms"], "delta": _delta(a["latency_ms"], b["latency_ms"])},
        "tokens": {"a": a["tokens"], "b": b["tokens"], "delta": _delta(a["tokens"], b["tokens"])},
        "same_kb": a["kb_version"] == b["kb_version"],
    }
