"""`atrium deploy render`: deploy/base/ and deploy/overlays/<group>/ as files, from tenants.yaml. The command owns
those two folders (a group removed from tenants.yaml loses its overlay); the rest of deploy/ is left alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from backend.deploy.kubernetes import base_kustomization, base_objects, overlay_kustomization, overlay_objects
from backend.deploy.monitoring import monitoring_objects
from backend.deploy.table import RoutingTable

HEADER = ("# Rendered by `atrium deploy render` from {source} (backend/deploy/). Do not edit: change tenants.yaml and\n"
          "# render again (README \"Operations at scale\").\n")
OWNED = ("base", "overlays")


class _Dumper(yaml.SafeDumper):
    """Block style; long strings kept on one line; no anchors (Kubernetes' own YAML never uses them)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _dump(documents: list[dict], source: str) -> str:
    body = "---\n".join(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
                        for doc in documents)
    return HEADER.format(source=source) + body


def render_tree(table: RoutingTable, config_dir: Path) -> dict[str, str]:
    """Relative path under deploy/ -> text, for every file the command writes."""
    source = "config/tenants.yaml"
    files: dict[str, str] = {}
    config_files = sorted(p.name for p in config_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    for name in config_files:  # Kustomize reads files under the kustomization's own folder only: copies
        files[f"base/config/{name}"] = (config_dir / name).read_text(encoding="utf-8")
    base = base_objects(table)
    if monitoring := monitoring_objects(table.monitoring):
        base["monitoring.yaml"] = monitoring
    for name, docs in base.items():
        files[f"base/{name}"] = _dump(docs, source)
    files["base/kustomization.yaml"] = _dump([base_kustomization(config_files, list(base))], source)
    for group in table.groups:
        objects = overlay_objects(table, group)
        for name, docs in objects.items():
            files[f"overlays/{group.name}/{name}"] = _dump(docs, source)
        files[f"overlays/{group.name}/kustomization.yaml"] = _dump([overlay_kustomization(objects)], source)
    return files


def on_disk(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text(encoding="utf-8")
            for folder in OWNED if (out / folder).is_dir()
            for p in sorted((out / folder).rglob("*")) if p.is_file()}


def drift(files: dict[str, str], out: Path) -> list[str]:
    """What differs between the rendered files and deploy/ (empty: no drift)."""
    present = on_disk(out)
    problems = [f"{name}: missing" for name in sorted(set(files) - set(present))]
    problems += [f"{name}: not rendered any more" for name in sorted(set(present) - set(files))]
    problems += [f"{name}: differs" for name in sorted(set(files) & set(present)) if files[name] != present[name]]
    return problems


def write_tree(files: dict[str, str], out: Path) -> None:
    for folder in OWNED:
        if (out / folder).exists():
            shutil.rmtree(out / folder)
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
