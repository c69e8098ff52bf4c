"""`atrium ingest --tenant T PATH...` (and seed-demo): queue files and embed them here, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from backend.auth.principal import MEMBER, TENANT_ADMIN, Principal
from backend.db.models import KbDocument
from backend.knowledge.service import UploadFile

EXTENSIONS = {".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm"}


def _expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                problems.append(f"{raw}: no {', '.join(sorted(EXTENSIONS))} files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{raw}: no such file")
    return files, problems


def ingest_paths(services, *, tenant: str, paths: list[str], kb: str = "default") -> int:
    """0 when every file is ready (or unchanged), 1 when some failed, 2 on a usage error."""
    knowledge = services.knowledge
    if services.registry.get(tenant) is None:
        print(f"error: unknown tenant {tenant!r}; known: {', '.join(services.registry.ids())}", file=sys.stderr)
        return 2
    files, problems = _expand(paths)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not files:
        return 2 if problems else 0
    # The operator at the console acts as the tenant's admin; the tenant still comes from --tenant only.
    operator = Principal(subject="cli", name="atrium CLI", tenants={tenant: frozenset({MEMBER, TENANT_ADMIN})},
                         auth="cli")
    knowledge.worker.stop()  # this process embeds in the foreground, with the progress bar
    failed = len(problems)
    queued: dict[str, str] = {}
    unchanged = 0
    for path in files:
        result = knowledge.upload(operator, tenant, [UploadFile(filename=path.name, data=path.read_bytes())], kb=kb,
                                  route="cli:ingest")
        for err in result["errors"]:
            failed += 1
            print(f"error: {path}: {err['detail']}", file=sys.stderr)
        for doc in result["documents"]:
            if doc["duplicate"] and doc["status"] == "ready":
                unchanged += 1
            else:
                queued[doc["id"]] = doc["filename"]
    ready = 0
    if queued:
        ready, embed_failed = _embed(knowledge, queued)
        failed += embed_failed
    print(f"{tenant}: {len(files)} file(s): {ready + unchanged} ready"
          + (f" ({unchanged} unchanged)" if unchanged else "") + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


def reindex(services, *, tenant: str | None) -> int:
    """`atrium reindex [--tenant T]`: chunk and embed every stored document again (0 ok, 1 failures, 2 usage)."""
    tenants = [tenant] if tenant else services.registry.ids()
    if tenant and services.registry.get(tenant) is None:
        print(f"error: unknown tenant {tenant!r}; known: {', '.join(services.registry.ids())}", file=sys.stderr)
        return 2
    knowledge = services.knowledge
    knowledge.worker.stop()  # this process embeds in the foreground, with the progress bar
    failed = 0
    for t in tenants:
        operator = Principal(subject="cli", name="atrium CLI", tenants={t: frozenset({MEMBER, TENANT_ADMIN})},
                             auth="cli")
        queued = knowledge.reindex(operator, t, route="cli:reindex")
        ready, bad = _embed(knowledge, queued) if queued else (0, 0)
        failed += bad
        print(f"{t}: {len(queued)} document(s) re-indexed: {ready} ready" + (f", {bad} failed" if bad else ""))
    return 1 if failed else 0


def _embed(knowledge, queued: dict[str, str]) -> tuple[int, int]:
    totals: dict[str, int] = {}
    bar = tqdm(total=0, unit="chunk", desc="embedding", dynamic_ncols=True, file=sys.stderr)

    def on_progress(doc: KbDocument, step: int) -> None:
        if doc.id not in queued:
            return
        if doc.status == "failed":
            return
        if totals.get(doc.id) != doc.chunk_total:
            bar.total = bar.total - totals.get(doc.id, 0) + doc.chunk_total
            totals[doc.id] = doc.chunk_total
            bar.set_postfix_str(queued[doc.id][:40])
            bar.refresh()
        bar.update(step)

    worker = knowledge.worker
    worker.on_progress = on_progress
    try:
        worker.drain(set(queued))
    finally:
        worker.on_progress = None
        bar.close()
    ready = failed = 0
    for doc_id, filename in queued.items():
        with knowledge.db.session() as session:
            doc = session.get(KbDocument, doc_id)
        if doc is not None and doc.status == "ready":
            ready += 1
        else:
            failed += 1
            print(f"error: {filename}: {doc.error if doc else 'deleted while ingesting'}", file=sys.stderr)
    return ready, failed
