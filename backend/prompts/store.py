"""Versioned prompt files: prompts/<tenant>/<assistant>/v0001.md + labels.yaml.

Paths come only from validated slugs (no traversal). Safe with several replicas sharing the folder:
- a version file is immutable and created exclusively (hard link of a fully written temp file: the number
  is taken or the write fails, and nobody ever reads a half-written version);
- a save names the version the editor started from (`base_version`); anything else is a conflict;
- labels.yaml is replaced atomically (temp file + rename) under an advisory lock, so label moves never
  lose one another's history entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from backend.prompts.contract import (
    LABEL_RE,
    ImportConflict,
    InvalidPromptName,
    LabelMove,
    LabelResolution,
    PromptFileInvalid,
    PromptNotAvailable,
    PromptNotFound,
    PromptVersion,
    VersionConflict,
    check_label,
    dump_labels,
    dump_prompt_file,
    now,
    parse_prompt_file,
    plan_labels,
    prepare_version,
)
from backend.prompts.schema import RenderError, ValidationReport, render
from backend.tenants import is_slug

__all__ = ["PromptStore", "PromptVersion", "PromptNotFound", "InvalidPromptName", "VersionConflict",
           "LabelMove", "PromptFileInvalid", "PromptNotAvailable", "render", "RenderError", "parse_prompt_file",
           "dump_prompt_file", "LABEL_RE"]

_VERSION_RE = re.compile(r"^v(\d{4,})\.md$")
LABELS_FILE = "labels.yaml"


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


class PromptStore(LabelResolution):
    """The file store (the embedded default; see backend/prompts/sql_store.py for the database one)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"the folder {self.root.absolute()}"

    def check_names(self, tenant: str, assistant: str) -> None:
        self.assistant_dir(tenant, assistant)

    # -- paths ---------------------------------------------------------------------------------------------

    def assistant_dir(self, tenant: str, assistant: str) -> Path:
        if not isinstance(tenant, str) or not isinstance(assistant, str) or not is_slug(tenant) \
                or not is_slug(assistant):
            raise InvalidPromptName(f"invalid tenant or assistant name: {tenant!r}/{assistant!r}")
        root = self.root.resolve()
        path = (root / tenant / assistant).resolve()
        if root not in path.parents:
            raise InvalidPromptName("prompt path escapes the prompts root")
        return path

    def _version_path(self, tenant: str, assistant: str, version: int) -> Path:
        if not isinstance(version, int) or version < 1:
            raise PromptNotFound(f"{tenant}/{assistant} has no version {version!r}")
        return self.assistant_dir(tenant, assistant) / f"v{version:04d}.md"

    # -- reading -------------------------------------------------------------------------------------------

    def tenants(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_slug(p.name))

    def assistants(self, tenant: str) -> list[str]:
        self.assistant_dir(tenant, "x")  # validates the tenant slug
        folder = self.root / tenant
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and is_slug(p.name))

    def versions(self, tenant: str, assistant: str) -> list[int]:
        folder = self.assistant_dir(tenant, assistant)
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name)))

    def latest(self, tenant: str, assistant: str) -> int:
        versions = self.versions(tenant, assistant)
        return versions[-1] if versions else 0

    def _labels_doc(self, tenant: str, assistant: str) -> dict[str, Any]:
        path = self.assistant_dir(tenant, assistant) / LABELS_FILE
        if not path.is_file():
            return {"labels": {}, "history": []}
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            return {"labels": {str(k): int(v) for k, v in (raw.get("labels") or {}).items()},
                    "history": list(raw.get("history") or [])}
        except (yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise PromptFileInvalid(f"{path} is not a valid labels file{where}: it holds `labels:` (label: version "
                                    "number) and `history:`; fix it, or copy another assistant's") from exc

    def labels(self, tenant: str, assistant: str) -> dict[str, int]:
        return self._labels_doc(tenant, assistant)["labels"]

    def label_history(self, tenant: str, assistant: str) -> list[dict[str, Any]]:
        """Oldest first: {who, label, from, to, at}."""
        return self._labels_doc(tenant, assistant)["history"]

    def version_text(self, tenant: str, assistant: str, version: int) -> str:
        path = self._version_path(tenant, assistant, version)
        if not path.is_file():
            raise PromptNotFound(f"{tenant}/{assistant} has no version {version}")
        return path.read_text(encoding="utf-8")

    def get(self, tenant: str, assistant: str, version: int) -> PromptVersion:
        text = self.version_text(tenant, assistant, version)
        path = self._version_path(tenant, assistant, version)
        meta, body = parse_prompt_file(text, source=str(path))
        return PromptVersion(tenant=tenant, assistant=assistant, version=version, body=body, config=meta)

    def _no_versions(self, tenant: str, assistant: str) -> str:
        folder = self.assistant_dir(tenant, assistant)
        what = "does not exist" if not folder.is_dir() else "holds no version file (v0001.md …)"
        return (f"{folder} {what}, so {tenant}/{assistant} has no prompt: create v0001.md and labels.yaml there "
                f"(e.g. copy another assistant's folder from {folder.parent}), or save a first version in the "
                "prompt studio (/studio)")

    def _dangling(self, tenant: str, assistant: str, labels: dict[str, int]) -> str:
        folder = self.assistant_dir(tenant, assistant)
        which = ", ".join(f"`{label}` at version {v} (v{v:04d}.md)" for label, v in labels.items())
        have = ", ".join(str(v) for v in self.versions(tenant, assistant)) or "none"
        return (f"{folder / LABELS_FILE} points {which}, which does not exist in {folder} (versions: {have}): "
                "move the label to an existing version (prompt studio, or edit labels.yaml)")

    # -- writing -------------------------------------------------------------------------------------------

    def create_version(self, tenant: str, assistant: str, *, body: str, config: dict[str, Any], message: str,
                       author: str, base_version: int, author_for: str | None = None
                       ) -> tuple[PromptVersion, ValidationReport]:
        """Validate and save a new immutable version after `base_version`, or raise VersionConflict /
        PromptValidationError. Returns the version and the validation warnings."""
        folder = self.assistant_dir(tenant, assistant)
        text, report = prepare_version(body=body, config=config, message=message, author=author,
                                       author_for=author_for)
        latest = self.latest(tenant, assistant)
        if base_version != latest:
            raise VersionConflict(latest, base_version)
        number = latest + 1
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"v{number:04d}.md"
        tmp = folder / f".v{number:04d}.{uuid.uuid4().hex}.tmp"
        _fsync_write(tmp, text)
        try:
            os.link(tmp, target)  # atomic and exclusive: fails if the number is taken
        except FileExistsError:
            raise VersionConflict(self.latest(tenant, assistant), base_version) from None
        finally:
            tmp.unlink(missing_ok=True)
        return self.get(tenant, assistant, number), report

    @contextlib.contextmanager
    def _labels_lock(self, folder: Path) -> Iterator[None]:
        # Serialises read-modify-write of labels.yaml across processes; readers need no lock because
        # the file is only ever replaced whole.
        with open(folder / ".labels.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def move_label(self, tenant: str, assistant: str, label: str, version: int, *, who: str) -> LabelMove:
        check_label(label)
        folder = self.assistant_dir(tenant, assistant)
        if not self._version_path(tenant, assistant, version).is_file():
            raise PromptNotFound(f"{tenant}/{assistant} has no version {version}")
        with self._labels_lock(folder):
            doc = self._labels_doc(tenant, assistant)
            before = doc["labels"].get(label)
            entry = {"who": who, "label": label, "from": before, "to": version, "at": now()}
            doc["labels"][label] = version
            doc["history"].append(entry)
            self._write_labels(folder, doc["labels"], doc["history"])
        return LabelMove(label=label, before=before, after=version, entry=entry)

    def _write_labels(self, folder: Path, labels: dict[str, int], history: list[dict[str, Any]]) -> None:
        tmp = folder / f".{LABELS_FILE}.{uuid.uuid4().hex}.tmp"
        _fsync_write(tmp, dump_labels(labels, history))
        os.replace(tmp, folder / LABELS_FILE)

    # -- import (backend/prompts/exchange.py) ----------------------------------------------------------------

    def import_version(self, tenant: str, assistant: str, version: int, text: str) -> bool:
        """Write `text` as `version` unless it is there: True when written, False when the same text is there,
        ImportConflict when other text is (never overwritten)."""
        target = self._version_path(tenant, assistant, version)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            _fsync_write(tmp, text)
            try:
                os.link(tmp, target)
                return True
            except FileExistsError:
                pass  # written meanwhile: compare below
            finally:
                tmp.unlink(missing_ok=True)
        if target.read_text(encoding="utf-8") != text:
            raise ImportConflict(f"{target} already exists with different text")
        return False

    def import_labels(self, tenant: str, assistant: str, labels: dict[str, int],
                      history: list[dict[str, Any]]) -> bool:
        folder = self.assistant_dir(tenant, assistant)
        folder.mkdir(parents=True, exist_ok=True)
        with self._labels_lock(folder):
            doc = self._labels_doc(tenant, assistant)
            added = plan_labels(doc["labels"], doc["history"], labels, history)
            if added is None:
                return False
            self._write_labels(folder, dict(labels), doc["history"] + added)
        return True

