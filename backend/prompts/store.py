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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from backend.errors import Unavailable
from backend.prompts.schema import (
    SYSTEM_FIELDS,
    RenderError,
    ValidationReport,
    render,
    validate_version,
)
from backend.tenants import is_slug

__all__ = ["PromptStore", "PromptVersion", "PromptNotFound", "InvalidPromptName", "VersionConflict",
           "LabelMove", "PromptFileInvalid", "PromptNotAvailable", "render", "RenderError", "parse_prompt_file",
           "dump_prompt_file"]

_VERSION_RE = re.compile(r"^v(\d{4,})\.md$")
_FRONT_RE = re.compile(r"^---\n(.*?)\n---\n?(.*)$", re.S)
LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
LABELS_FILE = "labels.yaml"


class PromptNotFound(LookupError):
    pass


class InvalidPromptName(ValueError):
    pass


class VersionConflict(Exception):
    """Someone saved a newer version since the editor's base version."""

    def __init__(self, latest: int, base_version: int | None) -> None:
        self.latest = latest
        self.base_version = base_version
        super().__init__(f"version {latest} was saved after version {base_version}")


@dataclass
class PromptVersion:
    tenant: str
    assistant: str
    version: int
    body: str
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        c = self.config
        return {"version": self.version, "author": c.get("author"), "created_at": str(c.get("created_at", "")),
                "message": c.get("message"), "description": c.get("description"), "tier": c.get("tier")}


@dataclass
class LabelMove:
    label: str
    before: int | None
    after: int
    entry: dict[str, Any]


class PromptFileInvalid(Unavailable):
    """A version file on disk that cannot be read (edited by hand, say): the assistant is unavailable until
    it is fixed, and the message says where."""

    code = "prompt_file_invalid"


class PromptNotAvailable(Unavailable):
    """A configured assistant with no prompt to answer with (no folder, no version, or a label pointing at a version
    that does not exist): a server misconfiguration (503), not the caller's 404. The message names the absolute
    path and the fix."""

    code = "prompt_not_available"


def parse_prompt_file(text: str, *, source: str = "prompt file") -> tuple[dict[str, Any], str]:
    text = text.replace("\r\n", "\n")
    m = _FRONT_RE.match(text)
    if not m:
        return {}, text
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""  # +1 for the opening ---
        problem = getattr(exc, "problem", None) or str(exc)
        raise PromptFileInvalid(f"{source} has invalid front matter{where}: {problem}; fix the file "
                                "(quote values containing ': ') or save a new version in the studio") from exc
    if not isinstance(meta, dict):
        raise PromptFileInvalid(f"{source}: the front matter must be a YAML mapping of settings")
    return meta, m.group(2)


def dump_prompt_file(meta: dict[str, Any], body: str) -> str:
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100)
    return f"---\n{front}---\n{body}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


class PromptStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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

    def get(self, tenant: str, assistant: str, version: int) -> PromptVersion:
        path = self._version_path(tenant, assistant, version)
        if not path.is_file():
            raise PromptNotFound(f"{tenant}/{assistant} has no version {version}")
        meta, body = parse_prompt_file(path.read_text(encoding="utf-8"), source=str(path))
        return PromptVersion(tenant=tenant, assistant=assistant, version=version, body=body, config=meta)

    def resolve(self, tenant: str, assistant: str, label: str = "production") -> PromptVersion:
        """The version under `label` (read from disk each time, so label moves apply at once). PromptNotAvailable
        when the assistant has no version at all or the label points at a missing one; PromptNotFound when
        a label other than production is not set."""
        labels = self.labels(tenant, assistant)
        if label in labels:
            try:
                return self.get(tenant, assistant, labels[label])
            except PromptNotFound:
                raise PromptNotAvailable(self._dangling(tenant, assistant, {label: labels[label]})) from None
        versions = self.versions(tenant, assistant)
        if not versions:
            raise PromptNotAvailable(self._no_versions(tenant, assistant))
        if label == "production":
            return self.get(tenant, assistant, versions[-1])
        raise PromptNotFound(f"{tenant}/{assistant} has no label {label!r}")

    def problem(self, tenant: str, assistant: str) -> str | None:
        """Why a configured assistant cannot answer (and the fix), or None: checked at start and by /readyz. The
        studio can still write a first version for it (PromptStore.create_version)."""
        try:
            self.resolve(tenant, assistant, "production")
            labels = self.labels(tenant, assistant)
            have = set(self.versions(tenant, assistant))
            dangling = {label: v for label, v in labels.items() if v not in have}
        except (PromptNotAvailable, PromptFileInvalid) as exc:
            return exc.message
        return self._dangling(tenant, assistant, dangling) if dangling else None

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
        body = body.replace("\r\n", "\n")
        if body and not body.endswith("\n"):
            body += "\n"
        meta = {k: v for k, v in config.items() if k not in SYSTEM_FIELDS}
        meta.update(author=author, created_at=_now(), message=message)
        if author_for and author_for != author:
            meta["author_for"] = author_for
        parsed, report = validate_version(meta, body)
        latest = self.latest(tenant, assistant)
        if base_version != latest:
            raise VersionConflict(latest, base_version)
        number = latest + 1
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"v{number:04d}.md"
        tmp = folder / f".v{number:04d}.{uuid.uuid4().hex}.tmp"
        _fsync_write(tmp, dump_prompt_file(parsed.front_matter(), body))
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
        if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
            raise InvalidPromptName(f"invalid label {label!r}: use lowercase letters, digits and '-'")
        folder = self.assistant_dir(tenant, assistant)
        if not self._version_path(tenant, assistant, version).is_file():
            raise PromptNotFound(f"{tenant}/{assistant} has no version {version}")
        with self._labels_lock(folder):
            doc = self._labels_doc(tenant, assistant)
            before = doc["labels"].get(label)
            entry = {"who": who, "label": label, "from": before, "to": version, "at": _now()}
            doc["labels"][label] = version
            doc["history"].append(entry)
            tmp = folder / f".{LABELS_FILE}.{uuid.uuid4().hex}.tmp"
            _fsync_write(tmp, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
            os.replace(tmp, folder / LABELS_FILE)
        return LabelMove(label=label, before=before, after=version, entry=entry)

