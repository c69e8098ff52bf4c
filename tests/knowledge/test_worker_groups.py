"""A worker takes only the jobs of its process's deployment groups (ATRIUM_DEPLOYMENT_GROUPS): with jobs of two
groups queued in one database, a worker of `default` ingests sales' and leaves finance's queued, untouched (not
claimed, not counted as an attempt, not "resumed"); a worker of `regulated` then ingests finance's. The filter is
in the claim's SQL (repositories/documents.claim_next_job), so this holds for any number of workers."""

from __future__ import annotations

import pytest
from sqlmodel import select

from backend.db.models import KbDocument
from backend.knowledge.service import UploadFile
from tests.knowledge.conftest import admin_of


def _doc(name: str) -> UploadFile:
    return UploadFile(f"{name}.md", f"# {name} policy\n\nThe {name} team approves requests within two days.\n".encode())


def _rows(services) -> dict[str, KbDocument]:
    with services.db.session() as session:
        return {d.tenant: d for d in session.exec(select(KbDocument))}


@pytest.fixture(params=["sqlite", "postgresql"])
def build(request, make_settings):
    from backend.container import build_services

    built = []
    base = {"ATRIUM_INGEST_WORKER": "false"}  # the test runs the worker's steps itself
    if request.param == "postgresql":  # the claim's FOR UPDATE SKIP LOCKED with the tenants' filter
        base.update(DATABASE_URL=request.getfixturevalue("postgres_url"), ATRIUM_SINGLE_NODE="true",
                    VECTOR_STORE="sqlite", CHAINLIT_AUTH_SECRET="s" * 48)

    def make(groups: str | None):
        env = dict(base)
        if groups is not None:
            env["ATRIUM_DEPLOYMENT_GROUPS"] = groups
        services = build_services(make_settings(**env))
        built.append(services)
        return services

    yield make
    for services in reversed(built):
        services.close()


def test_a_worker_takes_only_its_groups_jobs(build):
    everyone = build(None)  # uploads of both groups, queued in the one shared database
    everyone.knowledge.upload(admin_of("sales"), "sales", [_doc("sales")])
    everyone.knowledge.upload(admin_of("finance"), "finance", [_doc("finance")])
    assert {t: d.status for t, d in _rows(everyone).items()} == {"sales": "queued", "finance": "queued"}

    default = build("default")
    worker = default.knowledge.worker
    assert worker.tenants == frozenset({"sales", "engineering"})
    assert worker.resume() == 1  # the unfinished jobs it may resume: sales' only
    taken = []
    while (doc := worker.run_once()) is not None:
        taken.append(doc.tenant)
    assert taken == ["sales"]
    rows = _rows(everyone)
    assert rows["sales"].status == "ready"
    finance = rows["finance"]
    assert (finance.status, finance.claimed_by, finance.lease_until, finance.attempts) == ("queued", None, None, 0)

    regulated = build("regulated")
    assert regulated.knowledge.worker.tenants == frozenset({"finance"})
    assert regulated.knowledge.worker.run_once().tenant == "finance"
    assert regulated.knowledge.worker.run_once() is None
    assert _rows(everyone)["finance"].status == "ready"


def test_a_worker_keeps_a_tenant_to_its_ingestion_jobs_limit(build):
    """tenants.yaml `limits.ingestion_jobs` (shipped default 1) reaches the claim: while another worker holds one
    of sales' jobs, this worker leaves sales' other jobs queued and takes engineering's."""
    from backend.db.repositories import documents as repo

    services = build(None)
    assert services.registry.limits("sales").ingestion_jobs == 1
    services.knowledge.upload(admin_of("sales"), "sales", [_doc("pricing"), _doc("discounts")])
    with services.db.session() as session:  # another worker (another pod) is ingesting one of sales' documents
        held = repo.claim_next_job(session=session, worker_id="elsewhere:1:x", lease_s=600)
    assert held.tenant == "sales"
    worker = services.knowledge.worker
    assert worker.run_once() is None  # sales is at its limit: its other document waits
    services.knowledge.upload(admin_of("engineering"), "engineering", [_doc("runbook")])
    assert worker.run_once().tenant == "engineering"  # a free worker serves the other tenants meanwhile
    with services.db.session() as session:
        repo.release_lease(session=session, document_id=held.id, worker_id="elsewhere:1:x")
    assert worker.run_once().tenant == "sales"


def test_a_process_of_every_group_takes_every_job(build):
    everyone = build(None)
    assert everyone.knowledge.worker.tenants is None
    everyone.knowledge.upload(admin_of("finance"), "finance", [_doc("finance")])
    assert everyone.knowledge.worker.run_once().tenant == "finance"


def test_the_cli_will_not_ingest_for_a_tenant_of_another_group(build, tmp_path, capsys):
    """Its worker would never take the job: the command says which group serves the tenant, and how to run it."""
    from backend.knowledge.cli import ingest_paths

    default = build("default")
    (tmp_path / "f.md").write_bytes(b"# Finance\n\nMeals up to 60 a day.\n")
    assert ingest_paths(default, tenant="finance", paths=[str(tmp_path / "f.md")]) == 2
    err = capsys.readouterr().err
    assert "deployment group 'regulated'" in err and "ATRIUM_DEPLOYMENT_GROUPS=regulated" in err
    with default.db.session() as session:
        assert list(session.exec(select(KbDocument))) == []
