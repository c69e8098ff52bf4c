"""The versioned prompt store, on every store (files, SQL on SQLite, SQL on PostgreSQL: tests/prompts/conftest.py):
exclusive versions, base-version conflicts, atomic labels, safe names. A few tests are about files on disk only."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from backend.prompts.schema import PromptValidationError
from backend.prompts.store import (
    InvalidPromptName,
    PromptFileInvalid,
    PromptNotAvailable,
    PromptNotFound,
    PromptStore,
    VersionConflict,
)
from tests.prompts import replica
from tests.prompts.replica import open_store

T, A = "sales", "sales-assistant"


@pytest.fixture
def files(prompts_root):
    """The file store itself, for what only exists on disk (temp files, symlinks, hand-edited labels.yaml)."""
    return PromptStore(prompts_root)


def _save(store: PromptStore, base: int, text: str, **config):
    v1 = store.get(T, A, 1)
    return store.create_version(T, A, body=v1.body + text, config={**v1.config, **config}, message=text.strip(),
                                author="bob", base_version=base)


def test_new_version_is_a_new_immutable_file_with_system_fields(store, store_kind, prompts_root):
    before, file_before = store.version_text(T, A, 1), (prompts_root / T / A / "v0001.md").read_bytes()
    pv, report = _save(store, 1, "\nBe brief.\n", signoff="-- Desk", author="mallory", created_at="1999")
    assert pv.version == 2 and store.versions(T, A) == [1, 2]
    assert store.version_text(T, A, 1) == before
    assert (prompts_root / T / A / "v0001.md").read_bytes() == file_before
    assert ((prompts_root / T / A / "v0002.md").is_file()) == (store_kind == "files"), "the SQL store writes no file"
    assert pv.config["author"] == "bob", "author comes from the caller, never from the submitted config"
    assert pv.config["created_at"] != "1999" and pv.config["message"] == "Be brief."
    assert pv.config["signoff"] == "-- Desk" and pv.body.endswith("Be brief.\n")
    assert report.ok
    assert not [p for p in (prompts_root / T / A).iterdir() if p.name.endswith(".tmp")], "temp files cleaned"


def test_save_on_an_old_base_is_a_conflict_naming_the_latest(store):
    _save(store, 1, "\nfirst\n")
    with pytest.raises(VersionConflict) as err:
        _save(store, 1, "\nsecond\n")
    assert err.value.latest == 2 and err.value.base_version == 1
    assert store.versions(T, A) == [1, 2]
    assert "first" in store.get(T, A, 2).body, "the first save is not overwritten"


def test_a_taken_number_fails_even_when_the_base_check_passed(store, store_spec):
    # Another replica wrote version 2 between our check and our write: the exclusive create refuses.
    _save(open_store(store_spec), 1, "\ntheirs\n")
    real_latest, calls = store.latest, []

    def stale_latest(tenant: str, assistant: str) -> int:  # the first look predates the other write
        calls.append(1)
        return 1 if len(calls) == 1 else real_latest(tenant, assistant)

    store.latest = stale_latest
    with pytest.raises(VersionConflict) as err:
        _save(store, 1, "\nmine\n")
    assert err.value.latest == 2
    assert "mine" not in store.version_text(T, A, 2) and "theirs" in store.version_text(T, A, 2)
    assert store.versions(T, A) == [1, 2]


def test_two_processes_saving_on_the_same_base_exactly_one_wins(store, store_spec):
    ctx = mp.get_context("spawn")
    for round_ in range(3):
        base = store.latest(T, A)
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=replica.store_save, args=(store_spec, barrier, base, f"p{round_}{i}",
                                                              results)) for i in range(2)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        kinds = sorted(o[1] for o in outcomes)
        assert kinds == ["conflict", "ok"], outcomes
        winner = next(o for o in outcomes if o[1] == "ok")
        loser = next(o for o in outcomes if o[1] == "conflict")
        assert winner[2] == base + 1 and loser[2] == base + 1, "the loser is told the winner's version"
        assert store.versions(T, A) == list(range(1, base + 2)), "exactly one version per round"
        assert winner[0] in store.get(T, A, base + 1).body and loser[0] not in store.get(T, A, base + 1).body


def test_label_move_is_atomic_and_keeps_history(store, prompts_root):
    assert store.label_history(T, A) == []
    _save(store, 1, "\nv2\n")
    move = store.move_label(T, A, "production", 2, who="carol")
    assert (move.before, move.after) == (1, 2)
    assert store.labels(T, A) == {"production": 2, "staging": 1}
    entry = store.label_history(T, A)[-1]
    assert {k: entry[k] for k in ("who", "label", "from", "to")} == \
        {"who": "carol", "label": "production", "from": 1, "to": 2}
    assert entry["at"].endswith("Z")
    store.move_label(T, A, "canary", 2, who="bob")  # custom labels are fine
    assert store.labels(T, A)["canary"] == 2 and store.label_history(T, A)[-1]["from"] is None
    back = store.move_label(T, A, "production", 1, who="dave")
    assert (back.before, back.after) == (2, 1)
    assert [(e["who"], e["label"], e["from"], e["to"]) for e in store.label_history(T, A)] == [
        ("carol", "production", 1, 2), ("bob", "canary", None, 2), ("dave", "production", 2, 1)]
    assert store.resolve(T, A).version == 1 and store.resolve(T, A, "canary").version == 2
    leftovers = [p.name for p in (prompts_root / T / A).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_label_move_to_a_missing_version_or_bad_label_changes_nothing(store, prompts_root):
    before = (prompts_root / T / A / "labels.yaml").read_text()
    state = store.labels(T, A), store.label_history(T, A)
    with pytest.raises(PromptNotFound):
        store.move_label(T, A, "production", 9, who="bob")
    for bad in ("Prod", "../x", "a/b", "", "x" * 40):
        with pytest.raises(InvalidPromptName):
            store.move_label(T, A, bad, 1, who="bob")
    assert (prompts_root / T / A / "labels.yaml").read_text() == before
    assert (store.labels(T, A), store.label_history(T, A)) == state


def test_concurrent_label_moves_from_processes_lose_nothing(store, store_spec):
    for i in range(3):
        _save(store, store.latest(T, A), f"\nv{i + 2}\n")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=replica.store_move_labels,
                         args=(store_spec, barrier, label, [2, 3, 4, 1] * 5, who, results))
             for label, who in (("production", "p1"), ("staging", "p2"))]
    for p in procs:
        p.start()
    # Readers during the storm always see whole labels (a parseable file, committed rows).
    while any(p.is_alive() for p in procs):
        assert set(store.labels(T, A)) >= {"production", "staging"}
    for p in procs:
        p.join(30)
    assert sorted(results.get(timeout=10)[0] for _ in procs) == ["p1", "p2"]
    history = store.label_history(T, A)
    assert len(history) == 40, "no history entry was lost to a concurrent writer"
    for label in ("production", "staging"):
        moves = [e for e in history if e["label"] == label]
        assert [e["to"] for e in moves] == [2, 3, 4, 1] * 5
        assert all(a["to"] == b["from"] for a, b in zip(moves, moves[1:], strict=False))
    assert store.labels(T, A) == {"production": 1, "staging": 1}


@pytest.mark.parametrize("tenant,assistant", [
    ("..", "sales-assistant"), ("sales", ".."), ("sales", "../finance"), ("../../etc", "passwd"),
    ("sales", "sales-assistant/../../finance"), ("Sales", "x"), ("sales", "/etc"), ("sales", ""),
    ("sales", "a\x00b"),
])
def test_traversal_names_are_refused(store, tenant, assistant):
    with pytest.raises(InvalidPromptName):
        store.versions(tenant, assistant)
    with pytest.raises(InvalidPromptName):
        store.create_version(tenant, assistant, body="x {{context}}", config={}, message="m", author="a",
                             base_version=0)


def test_symlink_escape_is_refused(files, prompts_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, prompts_root / "sales" / "evil")
    with pytest.raises(InvalidPromptName):
        files.versions("sales", "evil")


def test_hot_reload_label_moved_by_another_store_instance(store_spec):
    reader, writer = open_store(store_spec), open_store(store_spec)
    assert reader.resolve(T, A).version == 1
    _save(writer, 1, "\nnew\n")
    writer.move_label(T, A, "production", 2, who="carol")
    assert reader.resolve(T, A).version == 2, "no restart, no cache: the next resolve sees the move"
    assert reader.resolve(T, A, "staging").version == 1


def test_invalid_versions_are_not_written(store):
    v1 = store.get(T, A, 1)
    with pytest.raises(PromptValidationError) as err:
        store.create_version(T, A, body=v1.body + "{{secret}}", config={**v1.config, "temperature": 9},
                             message="m", author="bob", base_version=1)
    fields = {p.field for p in err.value.problems}
    assert fields == {"temperature", "body"}
    assert store.versions(T, A) == [1]


def test_an_assistant_without_a_prompt_is_unavailable_naming_the_absolute_folder_and_the_fix(files, prompts_root):
    store = files
    folder = prompts_root / "sales" / "deal-desk"
    for path in folder.iterdir():
        path.unlink()
    for state in ("empty", "absent"):
        with pytest.raises(PromptNotAvailable) as info:
            store.resolve("sales", "deal-desk")
        assert info.value.status_code == 503 and info.value.code == "prompt_not_available"
        what = "does not exist" if state == "absent" else "holds no version file (v0001.md …)"
        assert info.value.message.startswith(f"{folder} {what}, so sales/deal-desk has no prompt: create v0001.md "
                                             f"and labels.yaml there (e.g. copy another assistant's folder from "
                                             f"{folder.parent})")
        assert store.problem("sales", "deal-desk") == info.value.message
        if state == "empty":
            folder.rmdir()
    # The studio still starts it at version one, and that clears the problem.
    v1 = store.get(T, A, 1)
    store.create_version("sales", "deal-desk", body=v1.body, config=v1.config, message="first", author="bob",
                         base_version=0)
    assert store.problem("sales", "deal-desk") is None and store.resolve("sales", "deal-desk").version == 1


def test_a_label_pointing_at_a_missing_version_is_unavailable_and_an_unset_label_not_found(files, prompts_root):
    store = files
    labels = prompts_root / T / A / "labels.yaml"
    assert store.problem(T, A) is None
    labels.write_text("labels: {production: 1, staging: 7}\nhistory: []\n")
    assert store.resolve(T, A).version == 1
    with pytest.raises(PromptNotAvailable) as info:
        store.resolve(T, A, "staging")
    assert info.value.message == (f"{labels} points `staging` at version 7 (v0007.md), which does not exist in "
                                  f"{labels.parent} (versions: 1): move the label to an existing version (prompt "
                                  "studio, or edit labels.yaml)")
    assert store.problem(T, A) == info.value.message  # not only production: the staging chat would fail too
    with pytest.raises(PromptNotFound):  # a label nobody set is the caller's 404
        store.resolve(T, A, "canary")
    labels.write_text("labels: {production: [1\n")
    with pytest.raises(PromptFileInvalid) as broken:
        store.resolve(T, A)
    assert broken.value.message.startswith(f"{labels} is not a valid labels file (line 2)")
    assert store.problem(T, A) == broken.value.message


def test_an_assistant_without_a_version_is_unavailable_in_every_store_until_its_first_save(store, store_kind):
    with pytest.raises(PromptNotAvailable) as info:
        store.resolve("sales", "pricing-bot")
    assert info.value.status_code == 503 and store.problem("sales", "pricing-bot") == info.value.message
    if store_kind != "files":
        assert info.value.message.startswith("sales/pricing-bot has no prompt version in the database (")
        assert info.value.message.endswith("save a first version in the prompt studio (/studio), or import a "
                                           "prompts folder (atrium prompts import DIR)")
    assert store.assistants("sales") == ["deal-desk", "sales-assistant"]
    v1 = store.get(T, A, 1)
    with pytest.raises(VersionConflict):
        store.create_version("sales", "pricing-bot", body=v1.body, config=v1.config, message="first", author="bob",
                             base_version=1)
    store.create_version("sales", "pricing-bot", body=v1.body, config=v1.config, message="first", author="bob",
                         base_version=0)
    assert store.problem("sales", "pricing-bot") is None and store.resolve("sales", "pricing-bot").version == 1
    assert store.assistants("sales") == ["deal-desk", "pricing-bot", "sales-assistant"]
    assert store.tenants() == ["engineering", "finance", "sales"]
