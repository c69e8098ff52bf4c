"""The usage outbox's spool: turn rows the database did not take, kept on local disk until it does.

One append-only JSON-lines file per process (`<data dir>/usage-outbox/<owner>.jsonl`), held under an exclusive
`flock` for the process's life: the lock is what tells a live process's spool from a dead one's. A process drains
its own file, and at start (and at each drain) any file whose lock it can take — a process that died with rows
in its spool hands them to the next process started on the same data dir. Every line is fsync'd: a row in the
spool survives the process. Lines are applied idempotently (by turn_key), so a drain that dies between the
database's commit and the truncation only repeats writes that change nothing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("atrium.usage")

Apply = Callable[[list[tuple[str, dict[str, Any]]]], None]  # [(op, row)] in one transaction; raises on failure


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Spool:
    def __init__(self, directory: Path, owner: str) -> None:
        self.directory = directory
        self.path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', owner)}.jsonl"
        self._fd: int | None = None
        self.pending = 0  # lines in this process's file not yet drained

    def _open(self) -> int:
        while self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours for the process's life (released by the kernel when it dies)
            if _is_current(fd, self.path):
                self._fd = fd
            else:
                # Another process took the empty file for a dead one's and deleted it between our open and our
                # lock: rows written to that inode would be found by nobody if we died. Open the path again.
                os.close(fd)
        return self._fd

    def append(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if not items:
            return
        fd = self._open()
        data = "".join(json.dumps({"op": op, "row": row}, default=_default) + "\n" for op, row in items)
        os.write(fd, data.encode())
        os.fsync(fd)
        self.pending += len(items)

    def drain(self, apply: Apply) -> int:
        """Apply this process's spooled rows, then any dead process's; returns the number applied. Raises (and
        keeps the rows) when the database still refuses them."""
        done = 0
        if self._fd is not None and self.pending:
            items = _read(self.path)
            if items:
                apply(items)
            os.ftruncate(self._fd, 0)
            done += len(items)
            self.pending = 0
        return done + self.adopt(apply)

    def adopt(self, apply: Apply) -> int:
        """Drain (then delete) the spools of processes that are gone: those whose lock can be taken."""
        if not self.directory.is_dir():
            return 0
        done = 0
        for path in sorted(self.directory.glob("*.jsonl")):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process's spool: it drains it itself
                if not _is_current(fd, path):
                    continue  # adopted and deleted by another process while we waited; the path may be a new file
                items = _read(path)
                if items:
                    apply(items)
                    log.info("usage outbox: rows of a stopped process written", extra={"rows": len(items),
                                                                                       "spool": path.name})
                path.unlink(missing_ok=True)
                done += len(items)
            finally:
                os.close(fd)
        return done

    def close(self) -> None:
        if self._fd is not None:
            empty = self.pending == 0
            os.close(self._fd)
            self._fd = None
            if empty:
                self.path.unlink(missing_ok=True)


def _is_current(fd: int, path: Path) -> bool:
    """Whether the locked file is still the one at `path` (not deleted, nor replaced by a new file)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)


def _read(path: Path) -> list[tuple[str, dict[str, Any]]]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash mid-write: the row before it is whole
            log.warning("usage outbox: a torn line skipped", extra={"spool": path.name})
            continue
        items.append((str(data["op"]), dict(data["row"])))
    return items
