"""The house rules of the code, checked on the source: imports flow one way (api, ui -> chat -> knowledge, llm,
prompts, governance -> db, auth -> settings), there is no import cycle, and neither the routers nor the chat's
UI handlers reach the database directly. Imports inside functions count like any other."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("backend", "ui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    found["app"] = REPO / "app.py"
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (the most specific module named by each import)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = _imports(path, modules) - {name}
        # Importing a package's module runs the package's __init__ too, but an __init__ that imports nothing
        # adds no edge worth following; a package does not depend on its own modules by being their parent.
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_cycle():
    assert _cycles(_graph()) == []


# Lower layers never import upper ones (DESIGN.md: api, ui -> chat -> knowledge, llm, prompts, governance ->
# db, auth -> settings).
LAYERS = {
    "backend.settings": 0,
    "backend.db": 1, "backend.auth": 1, "backend.config_files": 1, "backend.errors": 0, "backend.logs": 0,
    "backend.tracing": 0, "backend.runtime": 0, "backend.ids": 0, "backend.tenants": 1, "backend.groups": 1,
    "backend.monitoring": 1,  # tenants.yaml `monitoring:` (read by the manifests' renderer)
    "backend.startup_checks": 1,  # reads settings, raises a ConfigError; called by app and cli
    "backend.knowledge": 2, "backend.llm": 2, "backend.prompts": 2, "backend.governance": 2,
    "backend.chat": 3,
    "backend.evals": 4,  # runs the chat pipeline over test cases; used by the API and the CLI
    "backend": 0, "backend.container": 4, "backend.seed": 4, "backend.cli": 7, "backend.serving": 5,
    "backend.deploy": 5,  # renders manifests from the tenants registry; imported by the CLI only
    "backend.worker_metrics": 5,  # `atrium worker`'s /metrics port; imported by the CLI only
    "backend.api": 5, "ui": 5, "app": 6,
}


def _layer(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return best[1] if best else None


def test_imports_flow_one_way():
    upward = []
    for module, deps in _graph().items():
        mine = _layer(module)
        for dep in deps:
            theirs = _layer(dep)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} (layer {mine}) -> {dep} (layer {theirs})")
    assert sorted(upward) == []


def test_every_module_has_a_layer():
    assert sorted(m for m in _graph() if _layer(m) is None) == []
