"""Writes tests/file_seconds.tsv (the order tests/file_order.py hands files out in) from a full run's durations.

    bash scripts/test.sh --durations=0 | .venv/bin/python scripts/file_seconds.py

pytest's `--durations=0` lists every test's setup, call and teardown seconds ("12.34s call tests/a.py::test_b");
a file's cost is their sum, its module fixtures' setup included (that is what a worker spends on it).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "tests" / "file_seconds.tsv"
LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s+(?:setup|call|teardown)\s+(tests/[^:\s]+\.py)")


def main() -> int:
    seconds: dict[str, float] = defaultdict(float)
    for line in sys.stdin:
        sys.stdout.write(line)
        if m := LINE.match(line):
            seconds[m.group(2)] += float(m.group(1))
    if not seconds:
        print("file_seconds: no durations in the input (run pytest with --durations=0)", file=sys.stderr)
        return 1
    rows = sorted(seconds.items(), key=lambda kv: -kv[1])
    TABLE.write_text("# seconds<TAB>test file, slowest first: written by scripts/file_seconds.py\n"
                     + "".join(f"{s:.1f}\t{path}\n" for path, s in rows))
    print(f"file_seconds: {len(rows)} files written to {TABLE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
