"""Differences between two prompt versions: text (unified + side-by-side rows) and settings.

Line matching (difflib's) costs up to quadratic time and more on crafted text: two versions of repeated lines
made one diff take seconds of CPU, and any member may ask for one. Here it is bounded: the common first and last
lines are taken off in linear time, and the matcher's work on what is left is counted against WORK_BUDGET
before it is done. Past the budget the changed middle is shown as one replaced block, and `line_diff` says so.
"""

from __future__ import annotations

import difflib
from typing import Any

from backend.prompts.schema import SYSTEM_FIELDS
from backend.prompts.store import PromptVersion

# Line comparisons one diff may make: prompts of hundreds of lines with many edits need a few thousand.
WORK_BUDGET = 1_000_000
Opcode = tuple[str, int, int, int, int]


class OverBudget(Exception):
    pass


class BoundedMatcher(difflib.SequenceMatcher):
    """difflib's matcher, refusing (OverBudget) any step that would take its work past `budget`. A step's work
    is bounded before it runs: for each line of `a` in range, its occurrences in `b`, plus both ranges' lengths."""

    def __init__(self, a: list[str], b: list[str], *, budget: int) -> None:
        super().__init__(a=a, b=b, autojunk=False)
        self.budget, self.work = budget, 0
        self._cost = [0]  # prefix sums of each line of a's occurrences in b
        for line in a:
            self._cost.append(self._cost[-1] + len(self.b2j.get(line, ())))

    def find_longest_match(self, alo: int = 0, ahi: int | None = None, blo: int = 0,
                           bhi: int | None = None) -> difflib.Match:
        ahi = len(self.a) if ahi is None else ahi
        bhi = len(self.b) if bhi is None else bhi
        cost = self._cost[ahi] - self._cost[alo] + (ahi - alo) + (bhi - blo)
        if self.work + cost > self.budget:
            raise OverBudget
        self.work += cost
        return super().find_longest_match(alo, ahi, blo, bhi)


def line_opcodes(a: list[str], b: list[str], *, budget: int = WORK_BUDGET) -> tuple[list[Opcode], bool, int]:
    """(difflib-style opcodes, whether the lines were matched one by one, the matcher's work)."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    mid_a, mid_b = a[head:len(a) - tail], b[head:len(b) - tail]
    codes: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    exact, work = True, 0
    if mid_a or mid_b:
        matcher = BoundedMatcher(mid_a, mid_b, budget=budget)
        try:
            middle = matcher.get_opcodes()
        except OverBudget:
            exact = False
            kind = "replace" if mid_a and mid_b else "delete" if mid_a else "insert"
            middle = [(kind, 0, len(mid_a), 0, len(mid_b))]
        work = matcher.work
        codes += [(op, i1 + head, i2 + head, j1 + head, j2 + head) for op, i1, i2, j1, j2 in middle]
    if tail:
        codes.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return codes, exact, work


class _Opcodes:
    """Given opcodes, grouped into hunks by difflib's own code."""

    def __init__(self, codes: list[Opcode]) -> None:
        self.codes = codes

    def get_opcodes(self) -> list[Opcode]:
        return self.codes

    get_grouped_opcodes = difflib.SequenceMatcher.get_grouped_opcodes


def _range(start: int, stop: int) -> str:
    """A hunk's line range as unified diffs write it (difflib's format)."""
    beginning, length = start + 1, stop - start
    if length == 1:
        return f"{beginning}"
    return f"{beginning - 1 if not length else beginning},{length}"


def _unified(a: list[str], b: list[str], codes: list[Opcode], fromfile: str, tofile: str, n: int = 3) -> str:
    lines: list[str] = []
    for group in _Opcodes(codes).get_grouped_opcodes(n):
        if not lines:
            lines += [f"--- {fromfile}", f"+++ {tofile}"]
        first, last = group[0], group[-1]
        lines.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@")
        for op, i1, i2, j1, j2 in group:
            if op == "equal":
                lines += [" " + line for line in a[i1:i2]]
                continue
            if op in ("replace", "delete"):
                lines += ["-" + line for line in a[i1:i2]]
            if op in ("replace", "insert"):
                lines += ["+" + line for line in b[j1:j2]]
    return "\n".join(lines)


def _rows(a: list[str], b: list[str], codes: list[Opcode]) -> list[dict[str, Any]]:
    """Side-by-side rows: {op: equal|insert|delete|replace, left, right, left_no, right_no}."""
    rows: list[dict[str, Any]] = []
    for op, i1, i2, j1, j2 in codes:
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
    codes, exact, _work = line_opcodes(a, b)
    unified = _unified(a, b, codes, f"v{old.version:04d}.md", f"v{new.version:04d}.md")
    keys = [k for k in dict.fromkeys([*old.config, *new.config]) if k not in SYSTEM_FIELDS]
    settings = [{"field": k, "from": old.config.get(k), "to": new.config.get(k)}
                for k in keys if old.config.get(k) != new.config.get(k)]
    rows = _rows(a, b, codes)
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
        # "lines": matched line by line; "block": too different to match within the work budget, so the
        # changed middle is one replaced block (every line of it shown as removed and added).
        "line_diff": "lines" if exact else "block",
    }
