"""The file layout as the exchange format: read a prompts folder, import it into a store, export a store to one,
and seed an empty database from the repository's prompts/ (`atrium prompts export|import DIR`, start-up).

Import is idempotent and never overwrites: a version already there with the same text is unchanged, one with
different text is an error naming it; labels follow contract.plan_labels. Every problem in the folder is found
before anything is written, so a refused import changes nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.prompts.contract import (
    LABEL_RE,
    ImportConflict,
    PromptFileInvalid,
    PromptStorage,
    dump_labels,
    parse_prompt_file,
    plan_labels,
)
from backend.tenants import is_slug

_VERSION_RE = re.compile(r"^v(\d{4,})\.md$")
LABELS_FILE = "labels.yaml"

Say = Callable[[str], None]


class FolderInvalid(ValueError):
    """A prompts folder that cannot be imported: every problem, each naming its file and the fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class AssistantFolder:
    tenant: str
    assistant: str
    path: Path
    versions: dict[int, str] = field(default_factory=dict)  # number -> the file's text
    labels: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PromptFolder:
    root: Path
    assistants: list[AssistantFolder]


def read_folder(root: Path) -> PromptFolder:
    """<root>/<tenant>/<assistant>/v0001.md … + labels.yaml, every file checked (FolderInvalid lists them all)."""
    root = Path(root)
    if not root.is_dir():
        raise FolderInvalid([f"{root.absolute()} is not a folder: name a prompts folder (<tenant>/<assistant>/"
                             "v0001.md …)"])
    problems: list[str] = []
    found: list[AssistantFolder] = []
    for tenant_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for folder in sorted(p for p in tenant_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not is_slug(tenant_dir.name) or not is_slug(folder.name):
                problems.append(f"{folder}: not a tenant/assistant name (lowercase letters, digits, '-'): "
                                "rename or remove it")
                continue
            item = AssistantFolder(tenant=tenant_dir.name, assistant=folder.name, path=folder)
            for path in sorted(folder.iterdir()):
                if m := _VERSION_RE.match(path.name):
                    text = path.read_text(encoding="utf-8")
                    try:
                        parse_prompt_file(text, source=str(path))
                    except PromptFileInvalid as exc:
                        problems.append(exc.message)
                        continue
                    item.versions[int(m.group(1))] = text
            problems.extend(_read_labels(item))
            found.append(item)
    if problems:
        raise FolderInvalid(problems)
    return PromptFolder(root=root, assistants=found)


def _read_labels(item: AssistantFolder) -> list[str]:
    path = item.path / LABELS_FILE
    if not path.is_file():
        return []
    fix = "it holds `labels:` (label: version number) and `history:` ({who, label, from, to, at} entries)"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        item.labels = {str(k): int(v) for k, v in (raw.get("labels") or {}).items()}
        item.history = [{"who": e.get("who"), "label": str(e["label"]),
                         "from": None if e.get("from") is None else int(e["from"]), "to": int(e["to"]),
                         "at": str(e.get("at") or "")} for e in (raw.get("history") or [])]
    except (yaml.YAMLError, AttributeError, TypeError, ValueError, KeyError) as exc:
        return [f"{path} is not a valid labels file ({type(exc).__name__}: {exc}): {fix}"]
    bad = [label for label in item.labels if not LABEL_RE.fullmatch(label)]
    if bad:
        return [f"{path}: invalid label name(s) {', '.join(map(repr, bad))}: use lowercase letters, digits and '-'"]
    return []


def import_folder(store: PromptStorage, root: Path, *, say: Say = print) -> tuple[int, int, int]:
    """Import `root` into `store`: (versions added, versions unchanged, label files changed). FolderInvalid (the
    folder's own problems) or ImportConflict (what differs from the store), naming each, before anything is
    written."""
    folder = read_folder(root)
    _check_against(store, folder)
    added = same = labels_changed = 0
    for item in folder.assistants:
        new = 0
        for number, text in sorted(item.versions.items()):
            if store.import_version(item.tenant, item.assistant, number, text):
                new += 1
        changed = bool(item.labels or item.history) and store.import_labels(item.tenant, item.assistant,
                                                                             item.labels, item.history)
        added, same, labels_changed = added + new, same + len(item.versions) - new, labels_changed + changed
        say(f"{item.tenant}/{item.assistant}: {new} version(s) added, {len(item.versions) - new} unchanged"
            + ("; labels updated" if changed else ""))
    return added, same, labels_changed


def gated_production_moves(store: PromptStorage, folder: PromptFolder,
                           gated: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The folder's moves of `production` that a tenant's release gate would have to allow: {tenant, assistant,
    from, to} for each tenant `gated` names, whose store already has a production (seeding an empty store releases
    nothing) that the folder points elsewhere, and not back to a version production had before (a rollback is not
    gated, as in the studio). An import does not run tests, so these need the operator's override."""
    moves = []
    for item in folder.assistants:
        to = item.labels.get("production")
        if to is None or not gated(item.tenant) or item.assistant not in store.assistants(item.tenant):
            continue
        current = store.labels(item.tenant, item.assistant).get("production")
        if current is None or current == to:
            continue
        if any(e.get("label") == "production" and to in (e.get("from"), e.get("to"))
               for e in store.label_history(item.tenant, item.assistant)):  # the store's history, not the file's
            continue
        moves.append({"tenant": item.tenant, "assistant": item.assistant, "from": current, "to": to})
    return moves


def _check_against(store: PromptStorage, folder: PromptFolder) -> None:
    """Every conflict between the folder and the store, named, before the import writes anything."""
    problems: list[str] = []
    for item in folder.assistants:
        have = set(store.versions(item.tenant, item.assistant))
        for number, text in sorted(item.versions.items()):
            if number in have and store.version_text(item.tenant, item.assistant, number) != text:
                problems.append(f"{item.path / f'v{number:04d}.md'}: version {number} of {item.tenant}/"
                                f"{item.assistant} already exists in {store.describe()} with different text; "
                                "versions are never overwritten: save the change as a new version (or export the "
                                "store and compare)")
        known = have | set(item.versions)
        missing = {label: v for label, v in item.labels.items() if v not in known}
        missing_moves = [e["to"] for e in item.history if e["to"] not in known]
        if missing or missing_moves:
            problems.append(f"{item.path / LABELS_FILE}: points at versions that exist neither in the folder nor "
                            f"in the store ({missing or sorted(set(missing_moves))}): add those versions or fix "
                            "the labels")
            continue
        try:
            plan_labels(store.labels(item.tenant, item.assistant), store.label_history(item.tenant, item.assistant),
                        item.labels, item.history)
        except ImportConflict as exc:
            problems.append(f"{item.path / LABELS_FILE}: the labels of {item.tenant}/{item.assistant} in "
                            f"{store.describe()} were moved since this folder was exported ({exc}): export the "
                            "store, merge the two labels.yaml files, and import again")
    if problems:
        raise ImportConflict("; ".join(problems), problems)


def export_store(store: PromptStorage, root: Path, *, say: Say = print) -> tuple[int, int]:
    """Write every tenant's versions and labels.yaml under `root`: (files written, files already equal). Files
    are replaced whole (temp file + rename); nothing is deleted."""
    written = unchanged = 0
    for tenant in store.tenants():
        for assistant in store.assistants(tenant):
            folder = Path(root) / tenant / assistant
            folder.mkdir(parents=True, exist_ok=True)
            files = {f"v{n:04d}.md": store.version_text(tenant, assistant, n)
                     for n in store.versions(tenant, assistant)}
            labels, history = store.labels(tenant, assistant), store.label_history(tenant, assistant)
            if labels or history:
                files[LABELS_FILE] = dump_labels(labels, history)
            new = sum(_write(folder / name, text) for name, text in files.items())
            written, unchanged = written + new, unchanged + len(files) - new
            say(f"{tenant}/{assistant}: {len(files) - (LABELS_FILE in files)} version(s), {new} file(s) written")
    return written, unchanged


def _write(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def seed_database(store: Any, root: Path) -> bool:
    """Seed an empty SQL store from `root` (the repository's prompts/) once, however many replicas start at the
    same moment; False when there was nothing to do."""
    if not Path(root).is_dir():
        return False
    folder = read_folder(root)
    if not folder.assistants:
        return False
    return bool(store.seed(folder, source=str(Path(root).absolute())))

