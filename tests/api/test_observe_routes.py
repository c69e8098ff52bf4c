"""The route names Observe remembers are the surface table's, and what it remembers stays bounded."""

from __future__ import annotations

from backend.api.observe import _REMEMBERED_PATH_CHARS, _REMEMBERED_ROUTES, remembering
from backend.auth.surface import SurfaceTable


def test_remembered_routes_are_the_tables():
    table = SurfaceTable()
    route_of = remembering(table.route_of)
    paths = [("POST", "/api/t/sales/v1/chat/completions"), ("GET", "/api/t/sales/v1/models"),
             ("GET", "/api/t/finance/documents/42"), ("GET", "/chat/login"), ("HEAD", "/healthz"),
             ("DELETE", "/api/t/sales/v1/chat/completions"), ("GET", "/nowhere"), ("GET", "/api/t/x/" + "a" * 500)]
    for _ in range(2):  # the second round from memory
        assert [route_of(m, p) for m, p in paths] == [table.route_of(m, p) for m, p in paths]


def test_only_short_paths_are_remembered_and_only_so_many():
    asked: list[str] = []

    def route_of(method: str, path: str) -> str:
        asked.append(path)
        return "(no route)"

    lookup = remembering(route_of)
    long_path = "/" + "a" * _REMEMBERED_PATH_CHARS
    for _ in range(3):
        lookup("GET", "/short")
        lookup("GET", long_path)
    assert asked == ["/short", long_path, long_path, long_path]
    for i in range(_REMEMBERED_ROUTES + 1):  # the oldest is forgotten once more than the bound were asked
        lookup("GET", f"/p{i}")
    asked.clear()
    lookup("GET", "/short")
    assert asked == ["/short"]
