"""Files as the exchange format: seeding an empty database (once, even from two processes at once), export and
import round trips, idempotent imports and refused conflicting ones, through the functions and the real CLI."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.db.engine import Database, make_engine
from backend.db.migrate import upgrade
from backend.prompts.contract import ImportConflict
from backend.prompts.exchange import FolderInvalid, export_store, import_folder, seed_database
from backend.prompts.sql_store import SqlPromptStore
from backend.prompts.store import PromptStore
from tests.conftest import _SCRUB, REPO
from tests.prompts import replica

T, A = "sales", "sales-assistant"
TABLES = ("prompt_version", "prompt_label", "prompt_label_move", "prompt_seed")


def files_of(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def rows(url: str) -> dict[str, list]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(sa.text(f"select * from {t}")).all()), key=repr)
                    for t in TABLES}
    finally:
        engine.dispose()


def edit(store, who: str = "bob") -> None:
    """Two saves and three label moves: versions 2 and 3, production at 3, staging at 2, canary created."""
    for text in ("\nBe brief.\n", "\nCite sources.\n"):
        v = store.get(T, A, store.latest(T, A))
        store.create_version(T, A, body=v.body + text, config=v.config, message=text.strip(), author=who,
                             base_version=v.version)
    store.move_label(T, A, "staging", 2, who="bob")
    store.move_label(T, A, "production", 3, who="carol")
    store.move_label(T, A, "canary", 2, who="carol")


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'fresh.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


def test_seeding_an_empty_database_once_then_never_again(sql_url, prompts_root):
    store = SqlPromptStore(Database(make_engine(sql_url)))
    assert seed_database(store, prompts_root) is True
    seeded = rows(sql_url)
    assert len(seeded["prompt_version"]) == 4 and len(seeded["prompt_label"]) == 8
    assert seed_database(store, prompts_root) is False, "the second start changes nothing"
    edit(store)
    after_edits = rows(sql_url)
    (prompts_root / "sales" / "deal-desk" / "v0002.md").write_text((prompts_root / "sales" / "deal-desk" /
                                                                     "v0001.md").read_text() + "\nmore\n")
    assert seed_database(store, prompts_root) is False, "a seeded database is never re-seeded from the folder"
    assert rows(sql_url) == after_edits
    assert store.resolve(T, A).version == 3 and store.versions("sales", "deal-desk") == [1]
    store.db.engine.dispose()


def test_two_replicas_seeding_at_once_seed_exactly_once(postgres_url, prompts_root):
    upgrade(postgres_url)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=replica.seed, args=(postgres_url, str(prompts_root), barrier, results))
             for _ in range(3)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert outcomes == [False, False, True], "one replica seeds, the others find it seeded"
    seeded = rows(postgres_url)
    assert len(seeded["prompt_version"]) == 4 and len(seeded["prompt_label"]) == 8
    assert len(seeded["prompt_seed"]) == 1 and seeded["prompt_label_move"] == []


def test_export_then_import_round_trips_exactly(store, tmp_path):
    edit(store)
    out = tmp_path / "exported"
    export_store(store, out, say=lambda _: None)
    exported = files_of(out)
    assert set(exported) == {f"{t}/{a}/{f}" for t, a in (("engineering", "eng-assistant"),
                                                          ("finance", "finance-assistant"), ("sales", "deal-desk"),
                                                          ("sales", "sales-assistant"))
                             for f in ("v0001.md", "labels.yaml")} | {f"{T}/{A}/v0002.md", f"{T}/{A}/v0003.md"}
    # Into an empty database, and into an empty folder: each exports the same files again.
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(fresh)
    for target in (SqlPromptStore(Database(make_engine(fresh))), PromptStore(tmp_path / "folder")):
        lines: list[str] = []
        assert import_folder(target, out, say=lines.append) == (6, 0, 4)
        assert lines[-1] == "sales/sales-assistant: 3 version(s) added, 0 unchanged; labels updated"
        again = tmp_path / f"again-{type(target).__name__}"
        export_store(target, again, say=lambda _: None)
        assert files_of(again) == exported
        assert target.label_history(T, A) == store.label_history(T, A) and target.labels(T, A) == store.labels(T, A)
        assert target.resolve(T, A).body == store.resolve(T, A).body
        # The same folder again: nothing changes.
        assert import_folder(target, out, say=lambda _: None) == (0, 6, 0)
    # The untouched shipped prompts export as they are in the repository.
    assert {k: v for k, v in exported.items() if not k.startswith(f"{T}/{A}/")} == \
        {k: v for k, v in files_of(REPO / "prompts").items() if not k.startswith(f"{T}/{A}/")}


def test_a_conflicting_folder_is_refused_naming_each_file_and_nothing_is_written(store, tmp_path):
    out = tmp_path / "exported"
    export_store(store, out, say=lambda _: None)
    edit(store)  # the store moves on: versions 2 and 3, label moves
    before = files_of(out)
    (out / T / A / "v0002.md").write_text((out / T / A / "v0001.md").read_text() + "\nsomething else\n")
    (out / "sales" / "deal-desk" / "v0001.md").write_text("---\ntier: local\n---\nchanged by hand {{context}}\n")
    (out / "finance" / "finance-assistant" / "v0002.md").write_text(before["finance/finance-assistant/v0001.md"])
    state = (store.versions("finance", "finance-assistant"), store.labels(T, A), store.label_history(T, A))
    with pytest.raises(ImportConflict) as err:
        import_folder(store, out, say=lambda _: None)
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == [str(out / "sales" / "deal-desk" / "v0001.md"),
                                                    str(out / T / A / "v0002.md"), str(out / T / A / "labels.yaml")]
    assert "version 2 of sales/sales-assistant already exists in " in problems[1]
    assert problems[1].endswith("with different text; versions are never overwritten: save the change as a new "
                                "version (or export the store and compare)")
    assert "were moved since this folder was exported" in problems[2]
    assert (store.versions("finance", "finance-assistant"), store.labels(T, A), store.label_history(T, A)) == state, \
        "the valid finance version 2 was not imported either: a refused import writes nothing"


def test_a_broken_folder_names_every_file(store, tmp_path):
    out = tmp_path / "broken"
    (out / "sales" / "x").mkdir(parents=True)
    (out / "sales" / "x" / "v0001.md").write_text("---\ntier: [local\n---\nbody\n")
    (out / "sales" / "x" / "labels.yaml").write_text("labels: {Prod: 1}\n")
    (out / "Sales" / "y").mkdir(parents=True)
    with pytest.raises(FolderInvalid) as err:
        import_folder(store, out, say=lambda _: None)
    assert len(err.value.problems) == 3, err.value.problems
    assert store.versions("sales", "x") == []


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "backend.cli", "prompts", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["database-sqlite", "database-postgres", "files"])
def test_cli_import_export_against_the_configured_store(backend, tmp_path, prompts_root, request):
    env = {"ATRIUM_DATA_DIR": str(tmp_path / "data")}
    if backend == "files":
        env["ATRIUM_PROMPTS_DIR"] = str(tmp_path / "store")
    elif backend == "database-sqlite":
        env["ATRIUM_PROMPT_STORE"] = "database"
    else:
        env["DATABASE_URL"] = request.getfixturevalue("postgres_url")  # PostgreSQL: the database by default
    first = _cli(["import", str(prompts_root)], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == "engineering/eng-assistant: 1 version(s) added, 0 unchanged; labels updated"
    assert first.stdout.splitlines()[-1].startswith("imported 4 new version(s) and 4 label file(s) into ")
    second = _cli(["import", str(prompts_root)], env)
    assert second.returncode == 0 and second.stdout.splitlines()[-1].startswith(
        f"nothing to import: {prompts_root} matches "), second.stdout
    exported = _cli(["export", str(tmp_path / "out")], env)
    assert exported.returncode == 0, exported.stderr
    assert files_of(tmp_path / "out") == files_of(prompts_root)
    shutil.copyfile(prompts_root / T / A / "v0001.md", prompts_root / "finance" / "finance-assistant" / "v0001.md")
    refused = _cli(["import", str(prompts_root)], env)
    error, last = refused.stderr.splitlines()
    assert refused.returncode == 1 and last == "nothing was imported", refused.stderr
    assert error.startswith(f"error: {prompts_root}/finance/finance-assistant/v0001.md: version 1 of "
                            "finance/finance-assistant already exists in ")
    assert error.endswith(" with different text; versions are never overwritten: save the change as a new version "
                          "(or export the store and compare)")
    if backend == "files":
        assert files_of(tmp_path / "store") == files_of(tmp_path / "out"), "the CLI wrote the prompts folder"
