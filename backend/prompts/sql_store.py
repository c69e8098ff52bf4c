"""Prompt versions in the database (SQLite or PostgreSQL): the file store's semantics without a shared volume.

- a version is immutable, stored as its file's text; its number is exclusive through the unique key
  (tenant, assistant, version): of two saves on the same base one inserts, the other gets IntegrityError and
  raises the same VersionConflict the file store raises (the API's 409);
- a label move, its `from` and its history row are one transaction under the label's lock (repositories/
  prompts.lock_label), so concurrent moves never lose one another's history entry;
- an empty database is seeded from a prompts folder in one transaction that first claims a seed row: of several
  replicas starting at once, one seeds and the others find it done.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from backend.db.engine import Database
from backend.db.repositories import prompts as repo
from backend.prompts.contract import (
    ImportConflict,
    InvalidPromptName,
    LabelMove,
    LabelResolution,
    PromptNotFound,
    PromptVersion,
    VersionConflict,
    check_label,
    now,
    parse_prompt_file,
    plan_labels,
    prepare_version,
)
from backend.prompts.schema import ValidationReport
from backend.tenants import is_slug

_RETRIES = 5  # a new label inserted by two movers at once: the loser starts again and finds it


class SqlPromptStore(LabelResolution):
    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> str:
        return f"the database ({self.db.engine.url.render_as_string(hide_password=True)})"

    def check_names(self, tenant: str, assistant: str) -> None:
        if not isinstance(tenant, str) or not isinstance(assistant, str) or not is_slug(tenant) \
                or not is_slug(assistant):
            raise InvalidPromptName(f"invalid tenant or assistant name: {tenant!r}/{assistant!r}")

    # -- reading -------------------------------------------------------------------------------------------

    def tenants(self) -> list[str]:
        with self.db.session() as s:
            return repo.prompt_tenants(session=s)

    def assistants(self, tenant: str) -> list[str]:
        self.check_names(tenant, "x")
        with self.db.session() as s:
            return repo.assistant_names(session=s, tenant=tenant)

    def versions(self, tenant: str, assistant: str) -> list[int]:
        self.check_names(tenant, assistant)
        with self.db.session() as s:
            return repo.version_numbers(session=s, tenant=tenant, assistant=assistant)

    def latest(self, tenant: str, assistant: str) -> int:
        versions = self.versions(tenant, assistant)
        return versions[-1] if versions else 0

    def labels(self, tenant: str, assistant: str) -> dict[str, int]:
        self.check_names(tenant, assistant)
        with self.db.session() as s:
            return repo.labels(session=s, tenant=tenant, assistant=assistant)

    def label_history(self, tenant: str, assistant: str) -> list[dict[str, Any]]:
        """Oldest first: {who, label, from, to, at}."""
        self.check_names(tenant, assistant)
        with self.db.session() as s:
            return repo.label_history(session=s, tenant=tenant, assistant=assistant)

    def version_text(self, tenant: str, assistant: str, version: int) -> str:
        self.check_names(tenant, assistant)
        text = None
        if isinstance(version, int) and version >= 1:
            with self.db.session() as s:
                text = repo.version_text(session=s, tenant=tenant, assistant=assistant, version=version)
        if text is None:
            raise PromptNotFound(f"{tenant}/{assistant} has no version {version!r}")
        return text

    def get(self, tenant: str, assistant: str, version: int) -> PromptVersion:
        text = self.version_text(tenant, assistant, version)
        meta, body = parse_prompt_file(text, source=f"{tenant}/{assistant} version {version} (in the database)")
        return PromptVersion(tenant=tenant, assistant=assistant, version=version, body=body, config=meta)

    def _no_versions(self, tenant: str, assistant: str) -> str:
        return (f"{tenant}/{assistant} has no prompt version in {self.describe()}: save a first version in the "
                "prompt studio (/studio), or import a prompts folder (atrium prompts import DIR)")

    def _dangling(self, tenant: str, assistant: str, labels: dict[str, int]) -> str:
        which = ", ".join(f"`{label}` at version {v}" for label, v in labels.items())
        have = ", ".join(str(v) for v in self.versions(tenant, assistant)) or "none"
        return (f"{tenant}/{assistant} has {which} in {self.describe()}, which does not exist (versions: {have}): "
                "move the label to an existing version in the prompt studio")

    # -- writing -------------------------------------------------------------------------------------------

    def create_version(self, tenant: str, assistant: str, *, body: str, config: dict[str, Any], message: str,
                       author: str, base_version: int, author_for: str | None = None
                       ) -> tuple[PromptVersion, ValidationReport]:
        """Validate and save a new immutable version after `base_version`, or raise VersionConflict /
        PromptValidationError. Returns the version and the validation warnings."""
        self.check_names(tenant, assistant)
        text, report = prepare_version(body=body, config=config, message=message, author=author,
                                       author_for=author_for)
        latest = self.latest(tenant, assistant)
        if base_version != latest:
            raise VersionConflict(latest, base_version)
        number = latest + 1
        with self.db.session() as s:
            try:
                repo.add_version(session=s, tenant=tenant, assistant=assistant, version=number, text=text,
                                 author=author)
                s.commit()
            except IntegrityError:
                s.rollback()
                raise VersionConflict(self.latest(tenant, assistant), base_version) from None
        return self.get(tenant, assistant, number), report

    def move_label(self, tenant: str, assistant: str, label: str, version: int, *, who: str) -> LabelMove:
        check_label(label)
        self.version_text(tenant, assistant, version)  # PromptNotFound for a missing version
        for attempt in range(_RETRIES):
            with self.db.session() as s:
                try:
                    exists, before = repo.lock_label(session=s, tenant=tenant, assistant=assistant, label=label)
                    entry = {"who": who, "label": label, "from": before, "to": version, "at": now()}
                    repo.set_label(session=s, tenant=tenant, assistant=assistant, label=label, version=version,
                                   exists=exists)
                    repo.add_label_move(session=s, tenant=tenant, assistant=assistant, entry=entry)
                    s.commit()
                    return LabelMove(label=label, before=before, after=version, entry=entry)
                except IntegrityError:
                    s.rollback()
                    if attempt == _RETRIES - 1:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- import and seeding (backend/prompts/exchange.py) -----------------------------------------------------

    def import_version(self, tenant: str, assistant: str, version: int, text: str) -> bool:
        """Insert `text` as `version` unless it is there: True when inserted, False when the same text is there,
        ImportConflict when other text is (never overwritten)."""
        self.check_names(tenant, assistant)
        with self.db.session() as s:
            have = repo.version_text(session=s, tenant=tenant, assistant=assistant, version=version)
            if have is None:
                try:
                    repo.add_version(session=s, tenant=tenant, assistant=assistant, version=version, text=text,
                                     author=_author(text))
                    s.commit()
                    return True
                except IntegrityError:  # inserted meanwhile: compare with it
                    s.rollback()
                    have = repo.version_text(session=s, tenant=tenant, assistant=assistant, version=version)
        if have != text:
            raise ImportConflict(f"{tenant}/{assistant} version {version} already exists in {self.describe()} "
                                 "with different text")
        return False

    def import_labels(self, tenant: str, assistant: str, labels: dict[str, int],
                      history: list[dict[str, Any]]) -> bool:
        self.check_names(tenant, assistant)
        for name in labels:
            check_label(name)
        with self.db.session() as s:
            # Every label of the assistant locked (first the ones the file names), then compared and written.
            for name in sorted(set(labels) | set(repo.labels(session=s, tenant=tenant, assistant=assistant))):
                repo.lock_label(session=s, tenant=tenant, assistant=assistant, label=name)
            have = repo.labels(session=s, tenant=tenant, assistant=assistant)
            added = plan_labels(have, repo.label_history(session=s, tenant=tenant, assistant=assistant),
                                labels, history)
            if added is None:
                s.rollback()
                return False
            self._write_labels(s, tenant, assistant, have, labels, added)
            s.commit()
        return True

    @staticmethod
    def _write_labels(s: Any, tenant: str, assistant: str, have: dict[str, int], labels: dict[str, int],
                      added: list[dict[str, Any]]) -> None:
        for name, version in labels.items():
            repo.set_label(session=s, tenant=tenant, assistant=assistant, label=name, version=int(version),
                           exists=name in have)
        for entry in added:
            repo.add_label_move(session=s, tenant=tenant, assistant=assistant, entry=entry)

    def seed(self, folder: Any, *, source: str) -> bool:
        """Load `folder` (exchange.PromptFolder) into an empty store in one transaction; False when the store was
        seeded already, holds versions, or another replica is seeding it now (this call then waits for it)."""
        with self.db.session() as s:
            try:
                repo.claim_seed(session=s, name="prompts", source=source)
            except IntegrityError:
                s.rollback()
                return False
            if repo.any_version(session=s):
                s.rollback()
                return False
            for item in folder.assistants:
                for number, text in sorted(item.versions.items()):
                    repo.add_version(session=s, tenant=item.tenant, assistant=item.assistant, version=number,
                                     text=text, author=_author(text))
                self._write_labels(s, item.tenant, item.assistant, {}, item.labels, item.history)
            s.commit()
        return True


def _author(text: str) -> str | None:
    try:
        author = parse_prompt_file(text)[0].get("author")
    except Exception:  # an unreadable front matter was refused before; the column is only a summary
        return None
    return str(author) if author is not None else None
