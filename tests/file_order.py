"""The order pytest-xdist hands test files out in: the slowest first, by the seconds tests/file_seconds.tsv records.

scripts/test.sh runs the suite with `--dist loadfile --no-loadscope-reorder`: each worker takes the next whole file
from the front of the collection. xdist's own order (most tests first) left the browser files, a few tests of a
minute or more each, for the end, where one worker ran them alone while the others had finished. Longest first,
the short files fill the end instead. Only the workers' collection is reordered (a run without xdist keeps pytest's
order); within a file the order is unchanged.

A file missing from the table (a new one) goes first: it may be long, and first it cannot become the tail.
Refresh the table after a full run: `bash scripts/test.sh --durations=0 | .venv/bin/python scripts/file_seconds.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TABLE = Path(__file__).resolve().parent / "file_seconds.tsv"


def file_seconds(table: Path = TABLE) -> dict[str, float]:
    """{"tests/x/test_y.py": seconds} from the table's `seconds<TAB>path` lines (# comments allowed)."""
    seconds: dict[str, float] = {}
    for line in table.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            value, path = line.split("\t")
            seconds[path] = float(value)
    return seconds


def slowest_files_first(items: list[pytest.Item], seconds: dict[str, float]) -> list[pytest.Item]:
    """`items` with whole files in descending recorded seconds, unrecorded files first (a stable sort: each file's
    tests stay together and in their order)."""
    def cost(item: pytest.Item) -> float:
        return seconds.get(item.nodeid.split("::", 1)[0], float("inf"))

    return sorted(items, key=lambda item: -cost(item))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its collection is what the controller hands out
        items[:] = slowest_files_first(items, file_seconds())
