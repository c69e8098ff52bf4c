"""The order test files are handed to pytest-xdist's workers in (tests/file_order.py): slowest recorded first,
unrecorded first of all, each file's tests together and in their order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.file_order import file_seconds, slowest_files_first


@dataclass
class Item:
    nodeid: str


def test_slowest_files_go_first_and_each_file_stays_whole_and_in_order():
    items = [Item(n) for n in ["tests/a.py::t1", "tests/a.py::t2", "tests/b.py::t1", "tests/new.py::t1",
                               "tests/c.py::t1", "tests/c.py::t2[x]", "tests/c.py::t2[y]"]]
    ordered = slowest_files_first(items, {"tests/a.py": 3.0, "tests/b.py": 50.0, "tests/c.py": 12.5})
    assert [i.nodeid for i in ordered] == ["tests/new.py::t1", "tests/b.py::t1", "tests/c.py::t1",
                                           "tests/c.py::t2[x]", "tests/c.py::t2[y]", "tests/a.py::t1",
                                           "tests/a.py::t2"]


def test_the_table_is_read_and_names_test_files(tmp_path: Path):
    table = tmp_path / "t.tsv"
    table.write_text("# comment\n120.5\ttests/browser/test_x.py\n\n0.3\ttests/test_y.py\n")
    assert file_seconds(table) == {"tests/browser/test_x.py": 120.5, "tests/test_y.py": 0.3}
    recorded = file_seconds()
    assert recorded and all(path.startswith("tests/") and path.endswith(".py") for path in recorded)
