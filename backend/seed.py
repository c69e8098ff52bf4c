"""`atrium seed-demo`: load the demo knowledge bases (demo/corpus/<tenant>/) for the demo tenants."""

from __future__ import annotations

import sys
from pathlib import Path

from backend.container import Services
from backend.settings import REPO_ROOT

DEMO_CORPUS = REPO_ROOT / "demo" / "corpus"


def demo_files(tenant: str) -> list[Path]:
    folder = DEMO_CORPUS / tenant
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []


def seed_demo(services: Services, *, if_empty: bool = False) -> int:
    knowledge = getattr(services, "knowledge", None)
    if knowledge is None:
        print("seed-demo: the knowledge base service is not available", file=sys.stderr)
        return 1
    from backend.knowledge.cli import ingest_paths

    for tenant in services.registry.ids():
        files = demo_files(tenant)
        if not files:
            continue
        if if_empty and knowledge.document_count(tenant=tenant) > 0:
            print(f"seed-demo: {tenant} already has documents, skipped")
            continue
        rc = ingest_paths(services, tenant=tenant, paths=[str(p) for p in files], kb="default")
        if rc:
            return rc
    return 0
