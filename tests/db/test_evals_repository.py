"""backend/db/repositories/evals.py: a call made for tenant B neither reads nor changes tenant A's test cases, runs,
results or rated exchanges, even for the same assistant name, case id or run id."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from backend.db.models import ChatTurn, Conversation, ConversationStep, EvalCase, EvalResult, EvalRun
from backend.db.repositories import evals as repo
from backend.db.repositories.turns import beat
from tests.db.tenancy import A, B, assert_all_covered, rows_of

AS = "assistant"  # the same assistant name in both tenants
UNSCOPED = {"owner_alive": "whether a process's heartbeat is current: the platform's own bookkeeping, no tenant data",
            "run_tenant": "which tenant a run id is (only its id): a 404 for another tenant's run is audited"}


@pytest.fixture
def seeded(db):
    with db.session() as s:
        repo.add_case(session=s, tenant=A, case=EvalCase(id="c1", tenant=A, assistant=AS, question="A's question?",
                                                         facts=["a fact"]))
        repo.add_run(session=s, tenant=A, run=EvalRun(id="r1", tenant=A, assistant=AS, started_by="a",
                                                      case_ids=["c1"], total=1, status="failed"))
        repo.add_result(session=s, tenant=A, result=EvalResult(run_id="r1", case_id="c1", tenant=A, answer="A's"))
        turn = ChatTurn(tenant=A, subject="a", assistant=AS, prompt_version=1)
        s.add(turn)
        s.add(Conversation(id="conv", tenant=A, subject="a", assistant=AS))
        s.commit()
        s.refresh(turn)
        s.add(ConversationStep(id="q", conversation_id="conv", tenant=A, type="user_message", output="A asks"))
        s.commit()
        s.add(ConversationStep(id="ans", conversation_id="conv", tenant=A, type="assistant_message", output="A's",
                               turn_id=turn.id, feedback_value=0))
        s.commit()
    db.turn_id = turn.id
    return db


def test_every_function_is_tenant_scoped_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_list_cases(seeded):
    with seeded.session() as s:
        assert repo.list_cases(session=s, tenant=B, assistant=AS) == []
        assert [c.id for c in repo.list_cases(session=s, tenant=A, assistant=AS)] == ["c1"]


def test_get_case(seeded):
    with seeded.session() as s:
        assert repo.get_case(session=s, tenant=B, assistant=AS, case_id="c1") is None
        assert repo.get_case(session=s, tenant=A, assistant=AS, case_id="c1") is not None


def test_count_cases(seeded):
    with seeded.session() as s:
        assert repo.count_cases(session=s, tenant=B, assistant=AS) == 0
        assert repo.count_cases(session=s, tenant=A, assistant=AS) == 1


def test_add_case(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        # The same id in another tenant is another case; the row is B's whatever the object said.
        row = repo.add_case(session=s, tenant=B, case=EvalCase(id="c1", tenant=A, assistant=AS, question="B?"))
        s.commit()
        assert row.tenant == B
        with pytest.raises(IntegrityError):  # an id is unique within its set
            repo.add_case(session=s, tenant=B, case=EvalCase(id="c1", tenant=B, assistant=AS, question="again"))
        s.rollback()
    assert rows_of(seeded, A) == before


def test_update_case(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.update_case(session=s, tenant=B, assistant=AS, case_id="c1", values={"question": "x"}) is None
        s.commit()
    assert rows_of(seeded, A) == before


def test_delete_case(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.delete_case(session=s, tenant=B, assistant=AS, case_id="c1") is False
        s.commit()
    assert rows_of(seeded, A) == before


def test_add_run(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        row = repo.add_run(session=s, tenant=B, run=EvalRun(id="r2", tenant=A, assistant=AS, started_by="b"))
        s.commit()
        assert row.tenant == B
    assert rows_of(seeded, A) == before


def test_get_run(seeded):
    with seeded.session() as s:
        assert repo.get_run(session=s, tenant=B, run_id="r1") is None
        assert repo.get_run(session=s, tenant=A, run_id="r1", assistant="other") is None
        assert repo.get_run(session=s, tenant=A, run_id="r1", assistant=AS) is not None


def test_list_runs(seeded):
    with seeded.session() as s:
        assert repo.list_runs(session=s, tenant=B, assistant=AS) == []
        assert [r.id for r in repo.list_runs(session=s, tenant=A, assistant=AS, status="failed")] == ["r1"]
        assert repo.list_runs(session=s, tenant=A, assistant=AS, prompt_version=3) == []


def test_update_run(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.update_run(session=s, tenant=B, run_id="r1", values={"status": "finished"})
        s.commit()
    assert rows_of(seeded, A) == before


def test_claim_run(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.claim_run(session=s, tenant=B, run_id="r1", owner="me", lease_s=60) is False
    assert rows_of(seeded, A) == before
    with seeded.session() as s:
        assert repo.claim_run(session=s, tenant=A, run_id="r1", owner="me", lease_s=60) is True
        beat(session=s, owner="me", host="h", pid=1)
        # Running for a live process: another one cannot take it.
        assert repo.claim_run(session=s, tenant=A, run_id="r1", owner="other", lease_s=60) is False


def test_claim_run_of_a_new_run_takes_only_a_queued_one(seeded):
    with seeded.session() as s:  # r1 failed: a resume may take it, a new run's first claim may not
        assert repo.claim_run(session=s, tenant=A, run_id="r1", owner="me", lease_s=60, statuses=("queued",)) is False
        assert repo.claim_run(session=s, tenant=A, run_id="r1", owner="me", lease_s=60) is True


def test_cancel_run(seeded):
    with seeded.session() as s:
        repo.update_run(session=s, tenant=A, run_id="r1", values={"status": "running"})
        s.commit()
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.cancel_run(session=s, tenant=B, run_id="r1", error="x") is False
    assert rows_of(seeded, A) == before
    with seeded.session() as s:
        assert repo.cancel_run(session=s, tenant=A, run_id="r1", error="cancelled by a") is True
        assert repo.cancel_run(session=s, tenant=A, run_id="r1", error="again") is False  # not running any more
        assert (repo.get_run(session=s, tenant=A, run_id="r1").status, repo.get_run(
            session=s, tenant=A, run_id="r1").error) == ("cancelled", "cancelled by a")


def test_finish_run(seeded):
    with seeded.session() as s:
        repo.update_run(session=s, tenant=A, run_id="r1", values={"status": "running", "owner": "me"})
        s.commit()
    before = rows_of(seeded, A)
    with seeded.session() as s:
        assert repo.finish_run(session=s, tenant=B, run_id="r1", owner="me", values={"status": "finished"}) is False
        assert repo.finish_run(session=s, tenant=A, run_id="r1", owner="other", values={"status": "x"}) is False
        s.commit()
    assert rows_of(seeded, A) == before
    with seeded.session() as s:
        repo.cancel_run(session=s, tenant=A, run_id="r1", error="cancelled")
        # Cancelled meanwhile: the runner's end state does not overwrite it.
        assert repo.finish_run(session=s, tenant=A, run_id="r1", owner="me", values={"status": "finished"}) is False
        s.commit()
        assert repo.get_run(session=s, tenant=A, run_id="r1").status == "cancelled"


def test_run_tenant(seeded):
    with seeded.session() as s:
        assert repo.run_tenant(session=s, run_id="r1") == A
        assert repo.run_tenant(session=s, run_id="nope") is None


def test_owner_alive(seeded):
    with seeded.session() as s:
        assert repo.owner_alive(session=s, owner="nobody", lease_s=60) is False
        beat(session=s, owner="somebody", host="h", pid=1)
        assert repo.owner_alive(session=s, owner="somebody", lease_s=60) is True


def test_add_result(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        row = repo.add_result(session=s, tenant=B, result=EvalResult(run_id="r1", case_id="c9", tenant=A))
        s.commit()
        assert row.tenant == B
        with pytest.raises(IntegrityError):  # one result per case and run
            repo.add_result(session=s, tenant=B, result=EvalResult(run_id="r1", case_id="c9", tenant=B))
        s.rollback()
    assert rows_of(seeded, A) == before


def test_list_results(seeded):
    with seeded.session() as s:
        assert repo.list_results(session=s, tenant=B, run_id="r1") == []
        assert [r.answer for r in repo.list_results(session=s, tenant=A, run_id="r1")] == ["A's"]


def test_done_case_ids(seeded):
    with seeded.session() as s:
        assert repo.done_case_ids(session=s, tenant=B, run_id="r1") == set()
        assert repo.done_case_ids(session=s, tenant=A, run_id="r1") == {"c1"}


def test_rated_exchange(seeded):
    with seeded.session() as s:
        assert repo.rated_exchange(session=s, tenant=B, turn_id=seeded.turn_id) is None
        exchange = repo.rated_exchange(session=s, tenant=A, turn_id=seeded.turn_id)
    assert exchange is not None and (exchange["question"], exchange["rating"]) == ("A asks", 0)
