"""Differences between two prompt versions: text (unified + side-by-side rows) and settings."""

from __future__ import annotations

import difflib
from typing import Any

from backend.prompts.schema import SYSTEM_FIELDS
from backend.prompts.store import PromptVersion


def _rows(a: list[str], b: list[str]) -> list[dict[str, Any]]:
    """Side-by-side rows: {op: equal|insert|delete|replace, left, right, left_no, right_no}."""
    rows: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            row_op = op
            if op == "replace" and k >= len(left):
                row_op = "insert"
            elif op == "replace" and k >= len(right):
                row_op = "delete"
            rows.append({
                "op": row_op,
                "left": left[k] if k < len(left) else None,
                "right": right[k] if k < len(right) else None,
                "left_no": i1 + k + 1 if k < len(left) else None,
                "right_no": j1 + k + 1 if k < len(right) else None,
            })
    return rows


def diff_versions(old: PromptVersion, new: PromptVersion) -> dict[str, Any]:
    a, b = old.body.splitlines(), new.body.splitlines()
    unified = "\n".join(difflib.unified_diff(
        a, b, fromfile=f"v{old.version:04d}.md", tofile=f"v{new.version:04d}.md", lineterm=""))
    keys = [k for k in dict.fromkeys([*old.config, *new.config]) if k not in SYSTEM_FIELDS]
    settings = [{"field": k, "from": old.config.get(k), "to": new.config.get(k)}
                for k in keys if old.config.get(k) != new.config.get(k)]
    rows = _rows(a, b)
    return {
        "from": old.summary(),
        "to": new.summary(),
        "unified": unified,
        "rows": rows,
        "settings": settings,
        "stats": {"added": sum(r["op"] == "insert" or (r["op"] == "replace" and r["right"] is not None)
                               for r in rows),
                  "removed": sum(r["op"] == "delete" or (r["op"] == "replace" and r["left"] is not None)
                                 for r in rows)},
        "identical": not unified and not settings,
    }
