"""What every prompt store is (files, SQL): the interface the studio, the chat and the CLI use, the values and
errors they exchange, and the rules both stores share, written once so the two cannot drift apart:
- which version a label resolves to, and why an assistant cannot answer (`LabelResolution`);
- what a saved version's text is (`prepare_version`);
- how an imported labels file meets the labels a store already has (`plan_labels`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import yaml

from backend.errors import Unavailable
from backend.prompts.schema import SYSTEM_FIELDS, ValidationReport, validate_version

LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_FRONT_RE = re.compile(r"^---\n(.*?)\n---\n?(.*)$", re.S)


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


class ImportConflict(Exception):
    """An imported version or labels file disagrees with what the store already holds: never overwritten.
    `problems`: each disagreement, naming its file and the fix."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


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
    that does not exist): a server misconfiguration (503), not the caller's 404. The message names where and the
    fix."""

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


def dump_labels(labels: dict[str, int], history: list[dict[str, Any]]) -> str:
    """labels.yaml as the file store writes it (and export writes it): labels by name, so every store exports the
    same bytes (a database has no order of its own)."""
    return yaml.safe_dump({"labels": dict(sorted(labels.items())), "history": history}, sort_keys=False,
                          allow_unicode=True)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prepare_version(*, body: str, config: dict[str, Any], message: str, author: str,
                    author_for: str | None) -> tuple[str, ValidationReport]:
    """A new version's file text (system fields from the caller, never from `config`) and its validation warnings;
    PromptValidationError when it is not valid."""
    body = body.replace("\r\n", "\n")
    if body and not body.endswith("\n"):
        body += "\n"
    meta = {k: v for k, v in config.items() if k not in SYSTEM_FIELDS}
    meta.update(author=author, created_at=now(), message=message)
    if author_for and author_for != author:
        meta["author_for"] = author_for
    parsed, report = validate_version(meta, body)
    return dump_prompt_file(parsed.front_matter(), body), report


def check_label(label: object) -> str:
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise InvalidPromptName(f"invalid label {label!r}: use lowercase letters, digits and '-'")
    return label


def plan_labels(have_labels: dict[str, int], have_history: list[dict[str, Any]], labels: dict[str, int],
                history: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """What importing (labels, history) into a store holding (have_labels, have_history) does: None when nothing
    changes, else the history entries to append (the labels then become `labels`). A store with no labels takes the
    file's as they are; a file whose history continues the store's adds its new moves. Anything else would lose a
    move somebody made: ImportConflict."""
    if have_labels == labels and have_history == history:
        return None
    if not have_labels and not have_history:
        return list(history)
    if len(history) > len(have_history) and history[:len(have_history)] == have_history:
        return history[len(have_history):]
    raise ImportConflict(f"labels {have_labels} with {len(have_history)} moves differ from the folder's labels "
                         f"{labels} with {len(history)} moves, and its history does not continue the store's")


class PromptStorage(Protocol):
    """A prompt store: immutable numbered versions per tenant and assistant, and labels pointing at them with their
    history. Every method takes a validated tenant slug and assistant name (InvalidPromptName otherwise)."""

    def check_names(self, tenant: str, assistant: str) -> None: ...

    def tenants(self) -> list[str]: ...

    def assistants(self, tenant: str) -> list[str]: ...

    def versions(self, tenant: str, assistant: str) -> list[int]: ...

    def latest(self, tenant: str, assistant: str) -> int: ...

    def labels(self, tenant: str, assistant: str) -> dict[str, int]: ...

    def label_history(self, tenant: str, assistant: str) -> list[dict[str, Any]]: ...

    def get(self, tenant: str, assistant: str, version: int) -> PromptVersion: ...

    def version_text(self, tenant: str, assistant: str, version: int) -> str: ...

    def resolve(self, tenant: str, assistant: str, label: str = "production") -> PromptVersion: ...

    def problem(self, tenant: str, assistant: str) -> str | None: ...

    def create_version(self, tenant: str, assistant: str, *, body: str, config: dict[str, Any], message: str,
                       author: str, base_version: int, author_for: str | None = None
                       ) -> tuple[PromptVersion, ValidationReport]: ...

    def move_label(self, tenant: str, assistant: str, label: str, version: int, *, who: str) -> LabelMove: ...

    def import_version(self, tenant: str, assistant: str, version: int, text: str) -> bool: ...

    def import_labels(self, tenant: str, assistant: str, labels: dict[str, int],
                      history: list[dict[str, Any]]) -> bool: ...

    def describe(self) -> str: ...


class LabelResolution:
    """resolve() and problem() for any store, from its labels(), versions() and get(); the store words its own
    fixes (_no_versions, _dangling), since only it knows where its versions live."""

    def labels(self, tenant: str, assistant: str) -> dict[str, int]:
        raise NotImplementedError

    def versions(self, tenant: str, assistant: str) -> list[int]:
        raise NotImplementedError

    def get(self, tenant: str, assistant: str, version: int) -> PromptVersion:
        raise NotImplementedError

    def _no_versions(self, tenant: str, assistant: str) -> str:
        raise NotImplementedError

    def _dangling(self, tenant: str, assistant: str, labels: dict[str, int]) -> str:
        raise NotImplementedError

    def resolve(self, tenant: str, assistant: str, label: str = "production") -> PromptVersion:
        """The version under `label` (read from the store each time, so label moves apply at once).
        PromptNotAvailable when the assistant has no version at all or the label points at a missing one;
        PromptNotFound when a label other than production is not set."""
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
        studio can still write a first version for it (create_version)."""
        try:
            self.resolve(tenant, assistant, "production")
            labels = self.labels(tenant, assistant)
            have = set(self.versions(tenant, assistant))
            dangling = {label: v for label, v in labels.items() if v not in have}
        except (PromptNotAvailable, PromptFileInvalid) as exc:
            return exc.message
        return self._dangling(tenant, assistant, dangling) if dangling else None
