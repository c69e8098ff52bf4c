"""backend/db/repositories/prompts.py: a call made for tenant B neither reads nor changes tenant A's prompt
versions, labels or label history, even for the same assistant name."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from backend.db.repositories import prompts as repo
from tests.db.tenancy import A, B, assert_all_covered, rows_of

AS = "assistant"  # the same assistant name in both tenants

UNSCOPED = {
    "prompt_tenants": "lists the tenants that have prompts, for `atrium prompts export` (an operator command)",
    "any_version": "whether the store is empty at all, for seeding at start",
    "claim_seed": "the one seed marker of the whole store",
}


@pytest.fixture
def seeded(db):
    with db.session() as s:
        repo.add_version(session=s, tenant=A, assistant=AS, version=1, text="A one", author="a")
        repo.add_version(session=s, tenant=A, assistant=AS, version=2, text="A two", author="a")
        repo.set_label(session=s, tenant=A, assistant=AS, label="production", version=2, exists=False)
        repo.add_label_move(session=s, tenant=A, assistant=AS,
                            entry={"who": "a", "label": "production", "from": 1, "to": 2, "at": "t"})
        s.commit()
    return db


def test_every_function_is_tenant_scoped_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_version_numbers(seeded):
    with seeded.session() as s:
        assert repo.version_numbers(session=s, tenant=B, assistant=AS) == []
        assert repo.version_numbers(session=s, tenant=A, assistant=AS) == [1, 2]


def test_version_text(seeded):
    with seeded.session() as s:
        assert repo.version_text(session=s, tenant=B, assistant=AS, version=1) is None
        assert repo.version_text(session=s, tenant=A, assistant=AS, version=1) == "A one"


def test_add_version(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.add_version(session=s, tenant=B, assistant=AS, version=1, text="B one", author="b")
        s.commit()
        with pytest.raises(IntegrityError):  # the number is exclusive within one tenant's assistant
            repo.add_version(session=s, tenant=B, assistant=AS, version=1, text="B again", author="b")
        s.rollback()
    assert rows_of(seeded, A) == before


def test_assistant_names(seeded):
    with seeded.session() as s:
        assert repo.assistant_names(session=s, tenant=B) == []
        assert repo.assistant_names(session=s, tenant=A) == [AS]


def test_labels(seeded):
    with seeded.session() as s:
        assert repo.labels(session=s, tenant=B, assistant=AS) == {}
        assert repo.labels(session=s, tenant=A, assistant=AS) == {"production": 2}


def test_label_history(seeded):
    with seeded.session() as s:
        assert repo.label_history(session=s, tenant=B, assistant=AS) == []
        assert len(repo.label_history(session=s, tenant=A, assistant=AS)) == 1


def test_lock_label(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.lock_label(session=s, tenant=B, assistant=AS, label="production") == (False, None)
        s.commit()
    assert rows_of(seeded, A) == before


def test_set_label(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.set_label(session=s, tenant=B, assistant=AS, label="production", version=1, exists=False)
        repo.set_label(session=s, tenant=B, assistant=AS, label="production", version=3, exists=True)
        s.commit()
        assert repo.labels(session=s, tenant=B, assistant=AS) == {"production": 3}
    assert rows_of(seeded, A) == before


def test_add_label_move(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.add_label_move(session=s, tenant=B, assistant=AS,
                            entry={"who": "b", "label": "production", "from": None, "to": 1, "at": "t"})
        s.commit()
    assert rows_of(seeded, A) == before
