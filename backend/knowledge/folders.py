"""What `atrium ingest PATH...` takes from its arguments: files as given, and the files of folders — named by
their path in the folder given, never following a link out of it — with every file left out named and why."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from backend.knowledge.parse import EXTENSIONS, extension

HIDDEN = "hidden"
OUTSIDE = "outside the folder"
UNSUPPORTED = "unsupported type"
NOT_A_FILE = "not a regular file"
REASONS = (OUTSIDE, UNSUPPORTED, HIDDEN, NOT_A_FILE)  # their order on the "skipped" line: links out first
SHOWN_PER_REASON = 10  # names listed per reason on the "skipped" line; the rest are counted


@dataclass(frozen=True)
class Source:
    path: Path  # the file to read
    name: str  # the document's name: its path in the folder given (apac/notes.md), or the bare file name
    folder: str = ""  # the folder part of `name` ("apac"; "" for a bare name)


@dataclass
class Found:
    sources: list[Source] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path as shown, reason)
    problems: list[str] = field(default_factory=list)  # arguments that gave nothing to ingest

    def skipped_line(self) -> str | None:
        """`skipped 3 file(s): passwd.txt (outside the folder); tool.exe (unsupported type); .hidden/h.md (hidden)`."""
        if not self.skipped:
            return None
        by_reason: dict[str, list[str]] = defaultdict(list)
        for shown, reason in self.skipped:
            by_reason[reason].append(shown)
        parts = []
        for reason in sorted(by_reason, key=REASONS.index):
            names = by_reason[reason]
            more = f", … {len(names) - SHOWN_PER_REASON} more" if len(names) > SHOWN_PER_REASON else ""
            parts.append(f"{', '.join(names[:SHOWN_PER_REASON])}{more} ({reason})")
        return f"skipped {len(self.skipped)} file(s): {'; '.join(parts)}"


def expand(paths: list[str]) -> Found:
    found = Found()
    folders = sum(1 for raw in paths if Path(raw).is_dir())
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            before = len(found.sources)
            # With several folders, a skipped file is shown with its folder (names alone could be ambiguous).
            _walk(path, found, prefix=f"{raw.rstrip('/')}/" if folders > 1 else "")
            if len(found.sources) == before:
                found.problems.append(f"{raw}: no {', '.join(sorted(EXTENSIONS))} files in this folder")
        elif path.is_file():
            # Named on the command line: taken as it is (a link too: the operator chose it); its type is checked
            # with the upload's own checks, so an unsupported one is refused the same way.
            found.sources.append(Source(path=path, name=path.name))
        else:
            found.problems.append(f"{raw}: no such file or folder")
    return found


def _walk(root: Path, found: Found, *, prefix: str) -> None:
    real_root = root.resolve()
    # followlinks=False: a linked folder is never entered. One that points into the folder loses nothing (its
    # files are taken under their own path); one that points out of it is named as skipped.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in dirnames:
            link = here / name
            if link.is_symlink() and not _inside(link, real_root):
                found.skipped.append((f"{prefix}{link.relative_to(root).as_posix()}/", OUTSIDE))
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            reason = _skip_reason(path, rel, real_root)
            if reason:
                found.skipped.append((f"{prefix}{rel}", reason))
            else:
                folder = str(PurePosixPath(rel).parent)
                found.sources.append(Source(path=path, name=rel, folder="" if folder == "." else folder))


def _inside(path: Path, real_root: Path) -> bool:
    return path.resolve().is_relative_to(real_root)


def _skip_reason(path: Path, rel: str, real_root: Path) -> str | None:
    if any(part.startswith(".") for part in PurePosixPath(rel).parts):
        return HIDDEN  # .git, .env, editor backups: not documents, and sometimes secrets
    if not _inside(path, real_root):
        # A link to /etc/passwd would put it in a knowledge base every member of the tenant can search.
        return OUTSIDE
    if not path.is_file():
        return NOT_A_FILE  # a dangling link, a socket or a pipe (reading a pipe would block)
    if extension(rel) not in EXTENSIONS:
        return UNSUPPORTED
    return None

