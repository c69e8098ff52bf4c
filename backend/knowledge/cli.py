"""`atrium ingest --tenant T PATH...` (and seed-demo) and `atrium reindex`: queue documents and embed them here,
with a progress bar. Exit codes: 0 done, 1 some document failed, 2 a usage error (said on one `error:` line)."""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable

from tqdm import tqdm

from backend.auth.principal import MEMBER, TENANT_ADMIN, Principal
from backend.db.models import KbDocument
from backend.errors import AtriumError
from backend.knowledge.folders import Source, expand
from backend.knowledge.service import UploadFile, check_kb


def _says_errors(command: Callable[..., int]) -> Callable[..., int]:
    """A refusal (a bad --kb, an unknown knowledge base) is one `error:` line and exit 2, not a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except AtriumError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2 if exc.status_code < 500 else 1
    return run


def _operator(tenant: str) -> Principal:
    # The operator at the console acts as the tenant's admin; the tenant still comes from --tenant only.
    return Principal(subject="cli", name="atrium CLI", tenants={tenant: frozenset({MEMBER, TENANT_ADMIN})},
                     auth="cli")


def _unknown_tenant(services, tenant: str) -> bool:
    if services.registry.get(tenant) is not None:
        return False
    print(f"error: {services.registry.not_here(tenant)}", file=sys.stderr)
    return True


@_says_errors
def ingest_paths(services, *, tenant: str, paths: list[str], kb: str = "default") -> int:
    """0 when every file is ready (or unchanged), 1 when some failed, 2 on a usage error."""
    if _unknown_tenant(services, tenant):
        return 2
    kb = check_kb(kb)
    found = expand(paths)
    for problem in found.problems:
        print(f"error: {problem}", file=sys.stderr)
    if (skipped := found.skipped_line()) is not None:
        print(skipped)
    if not found.sources:
        return 2 if found.problems else 0
    knowledge = services.knowledge
    knowledge.worker.stop()  # this process embeds in the foreground, with the progress bar
    operator = _operator(tenant)
    failed = len(found.problems)
    queued: dict[str, Source] = {}  # document id -> the (first) file it came from
    per_file: list[str] = []  # the document id of each file accepted
    unchanged = 0
    seen: dict[str, tuple[str, Source]] = {}  # document name -> (content hash, file) in this run
    for src in found.sources:
        try:
            data = src.path.read_bytes()
        except OSError as exc:
            failed += 1
            print(f"error: {src.path}: cannot be read ({exc.strerror or exc})", file=sys.stderr)
            continue
        digest = hashlib.sha256(data).hexdigest()
        first_digest, first = seen.setdefault(src.name, (digest, src))
        if first_digest != digest:
            # Same name, other content: one would replace the other as a "newer version". Never silently.
            failed += 1
            print(f"error: {src.path.absolute()} was not ingested: it is named {src.name!r} like "
                  f"{first.path.absolute()}, with other content, and would replace it; rename one, or ingest the "
                  "folder that holds both (documents are then named by their path in it)", file=sys.stderr)
            continue
        result = knowledge.upload(operator, tenant, [UploadFile(filename=src.path.name, data=data, folder=src.folder)],
                                  kb=kb, route="cli:ingest")
        for err in result["errors"]:
            failed += 1
            print(f"error: {src.path}: {err['detail']}", file=sys.stderr)
        for doc in result["documents"]:
            if doc["duplicate"] and doc["status"] == "ready":
                unchanged += 1
            else:
                queued.setdefault(doc["id"], src)
                per_file.append(doc["id"])
    outcome = _embed(knowledge, {i: s.name for i, s in queued.items()}) if queued else {}
    for doc_id, error in outcome.items():
        if error is not None:
            print(f"error: {queued[doc_id].path}: {error}", file=sys.stderr)
    ready = sum(1 for doc_id in per_file if outcome.get(doc_id) is None)
    failed += len(per_file) - ready
    total = len(found.sources)
    print(f"{tenant}: {total} file(s): {ready + unchanged} ready"
          + (f" ({unchanged} unchanged)" if unchanged else "") + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


@_says_errors
def reindex(services, *, tenant: str | None, include_failed: bool = False) -> int:
    """`atrium reindex [--tenant T] [--include-failed]`: chunk and embed every ready document again. Documents that
    had failed are skipped (named, with why) unless `include_failed`; either way only a document that was ready
    and fails now makes the exit code 1 (one that failed before and fails again is reported, as before)."""
    if tenant and _unknown_tenant(services, tenant):
        return 2
    knowledge = services.knowledge
    knowledge.worker.stop()  # this process embeds in the foreground, with the progress bar
    broken = 0
    for t in [tenant] if tenant else services.registry.ids():
        operator = _operator(t)
        failed_before = knowledge.list_documents(operator, t, status="failed", limit=100_000)
        if failed_before and not include_failed:
            print(f"{t}: skipped {len(failed_before)} document(s) that failed when added (--include-failed tries "
                  "them again): " + "; ".join(f"{d['filename']} ({d['error']})" for d in failed_before))
        queued = knowledge.reindex(operator, t, route="cli:reindex", include_failed=include_failed)
        outcome = _embed(knowledge, queued) if queued else {}
        was_failed = {d["id"] for d in failed_before}
        bad = 0
        for doc_id, error in outcome.items():
            if error is not None:
                print(f"error: {queued[doc_id]}: {error}", file=sys.stderr)
                bad += 1
                broken += doc_id not in was_failed
        ready = len(outcome) - bad
        print(f"{t}: {len(queued)} document(s) re-indexed: {ready} ready" + (f", {bad} failed" if bad else ""))
    return 1 if broken else 0


def _embed(knowledge, queued: dict[str, str]) -> dict[str, str | None]:
    """Embed the queued documents ({id: name}) here; -> {id: None when ready, else why not}."""
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
    outcome: dict[str, str | None] = {}
    for doc_id in queued:
        with knowledge.db.session() as session:
            doc = session.get(KbDocument, doc_id)
        if doc is None:
            # Only another process can do this now (in this run no two files share a name).
            outcome[doc_id] = "deleted, or replaced by a newer upload of the same name, while being ingested"
        else:
            outcome[doc_id] = None if doc.status == "ready" else (doc.error or doc.status)
    return outcome
