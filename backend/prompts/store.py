"""Read versioned prompt files. Paths come only from validated slugs (no traversal)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.tenants import is_slug

_VERSION_RE = re.compile(r"^v(\d{4,})\.md$")
_FRONT_RE = re.compile(r"^---\n(.*?)\n---\n?(.*)$", re.S)


class PromptNotFound(LookupError):
    pass


class InvalidPromptName(ValueError):
    pass


@dataclass
class PromptVersion:
    tenant: str
    assistant: str
    version: int
    body: str
    config: dict[str, Any] = field(default_factory=dict)


def parse_prompt_file(text: str) -> tuple[dict[str, Any], str]:
    m = _FRONT_RE.match(text)
    if not m:
        return {}, text
    meta = yaml.safe_load(m.group(1)) or {}
    if not isinstance(meta, dict):
        raise ValueError("front matter must be a YAML mapping")
    return meta, m.group(2)


class PromptStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def assistant_dir(self, tenant: str, assistant: str) -> Path:
        if not is_slug(tenant) or not is_slug(assistant):
            raise InvalidPromptName(f"invalid tenant or assistant name: {tenant!r}/{assistant!r}")
        path = (self.root / tenant / assistant).resolve()
        if self.root.resolve() not in path.parents:
            raise InvalidPromptName("prompt path escapes the prompts root")
        return path

    def versions(self, tenant: str, assistant: str) -> list[int]:
        folder = self.assistant_dir(tenant, assistant)
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name)))

    def labels(self, tenant: str, assistant: str) -> dict[str, int]:
        path = self.assistant_dir(tenant, assistant) / "labels.yaml"
        if not path.is_file():
            return {}
        raw = yaml.safe_load(path.read_text()) or {}
        return {str(k): int(v) for k, v in (raw.get("labels") or {}).items()}

    def get(self, tenant: str, assistant: str, version: int) -> PromptVersion:
        path = self.assistant_dir(tenant, assistant) / f"v{version:04d}.md"
        if not path.is_file():
            raise PromptNotFound(f"{tenant}/{assistant} has no version {version}")
        meta, body = parse_prompt_file(path.read_text())
        return PromptVersion(tenant=tenant, assistant=assistant, version=version, body=body, config=meta)

    def resolve(self, tenant: str, assistant: str, label: str = "production") -> PromptVersion:
        """The version under `label` (read from disk each time, so label moves apply at once)."""
        labels = self.labels(tenant, assistant)
        if label in labels:
            return self.get(tenant, assistant, labels[label])
        versions = self.versions(tenant, assistant)
        if not versions:
            raise PromptNotFound(f"no prompt versions in prompts/{tenant}/{assistant}/")
        if label == "production":
            return self.get(tenant, assistant, versions[-1])
        raise PromptNotFound(f"{tenant}/{assistant} has no label {label!r}")


_VAR_RE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def render(body: str, variables: dict[str, str]) -> str:
    """Fill `{{name}}` placeholders; unknown placeholders are an error naming them."""
    missing = sorted({m.group(1) for m in _VAR_RE.finditer(body)} - set(variables))
    if missing:
        raise KeyError(f"prompt uses undefined variable(s): {', '.join(missing)}")
    return _VAR_RE.sub(lambda m: str(variables[m.group(1)]), body)
