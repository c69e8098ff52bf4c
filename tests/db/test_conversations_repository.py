"""backend/db/repositories/conversations.py: a call made for tenant B never returns, changes or deletes tenant A's
conversations, messages, side panels or feedback, even for the same user (a member of both tenants) and when
B's call names A's ids."""

from __future__ import annotations

import pytest

from backend.db.models import ChatTurn, Conversation, ConversationElement, ConversationStep
from backend.db.repositories import conversations as repo
from backend.db.repositories.usage import insert_turns
from tests.db.tenancy import A, B, assert_all_covered, rows_of

USER = "carol"  # a member of both tenants

UNSCOPED = {
    "upsert_chat_user": "a person's latest claims: one row per person, whatever their tenants",
    "get_chat_user": "a person's latest claims, as above",
    "get_conversation": "by id, unscoped on purpose: the service tells 'not yours' (audited) from 'no such thread'",
    "get_step": "by id: the service checks the step's conversation and tenant against the caller",
    "update_conversation": "writes the row the caller holds, which the service checked (subject and tenant)",
    "set_feedback": "writes the step the caller holds, which the service checked",
}


def _seed(db, tenant: str) -> dict[str, object]:  # noqa: ANN001
    """A titled conversation of USER: a question, an answer of prompt version 3 (rated, with a comment), the run
    the chat's thumbs rate (rated too) and a side panel of the answer."""
    conv_id, question, run, answer, panel = (f"{tenant}-{x}" for x in ("conv", "question", "run", "answer", "panel"))
    with db.session() as s:
        (turn_id,) = insert_turns(session=s, turns=[ChatTurn(tenant=tenant, subject=USER, assistant="helper",
                                                             prompt_name="helper", prompt_version=3)])
        repo.create_conversation(session=s, conversation=Conversation(
            id=conv_id, tenant=tenant, subject=USER, assistant="helper", title=f"{tenant} pricing"))
        repo.save_step(session=s, subject=USER, step=ConversationStep(
            id=question, conversation_id=conv_id, tenant=tenant, type="user_message", output="shared words"))
        repo.save_step(session=s, subject=USER, step=ConversationStep(
            id=run, conversation_id=conv_id, tenant=tenant, type="run", feedback_value=1))
        repo.save_step(session=s, subject=USER, step=ConversationStep(
            id=answer, conversation_id=conv_id, tenant=tenant, type="assistant_message", parent_id=run,
            output=f"{tenant} answer", turn_id=turn_id, feedback_value=0, feedback_comment=f"{tenant} comment"))
        repo.save_element(session=s, element=ConversationElement(
            id=panel, conversation_id=conv_id, tenant=tenant, for_id=answer, content=f"{tenant} passage"))
    return {"conv": conv_id, "question": question, "run": run, "answer": answer, "panel": panel, "turn": turn_id}


@pytest.fixture
def seeded(db):
    db.a, db.b = _seed(db, A), _seed(db, B)
    return db


def test_every_function_is_tested_or_unscoped_on_purpose():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")} & repo.__dict__.keys()
    assert_all_covered(repo, tested, UNSCOPED)


def test_create_conversation(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:  # B's thread under A's id: refused, A's untouched
        taken = repo.create_conversation(session=s, conversation=Conversation(
            id=seeded.a["conv"], tenant=B, subject=USER, assistant="helper", title="hijack"))
    assert taken is None
    assert rows_of(seeded, A) == before


def test_list_conversations(seeded):
    with seeded.session() as s:
        listed = repo.list_conversations(session=s, subject=USER, tenants=[B], limit=50)
        assert [c.id for c in listed] == [seeded.b["conv"]]
        # A's title and messages match these searches too; rated answers exist in both tenants
        for search in (f"{A} pricing", "shared words", f"{A} answer"):
            assert A not in {c.tenant for c in repo.list_conversations(session=s, subject=USER, tenants=[B],
                                                                       limit=50, search=search)}
        assert [c.id for c in repo.list_conversations(session=s, subject=USER, tenants=[B], limit=50,
                                                      feedback=0)] == [seeded.b["conv"]]
        assert repo.list_conversations(session=s, subject=USER, tenants=[], limit=50) == []


def test_update_conversation(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        conversation = repo.get_conversation(session=s, conversation_id=seeded.b["conv"])
        repo.update_conversation(session=s, conversation=conversation, title="renamed")
    assert rows_of(seeded, A) == before


def test_delete_conversation(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.delete_conversation(session=s, conversation_id=seeded.a["conv"], tenant=B)
        repo.delete_conversation(session=s, conversation_id=seeded.b["conv"], tenant=B)
    assert rows_of(seeded, A) == before


def test_list_steps(seeded):
    with seeded.session() as s:
        assert repo.list_steps(session=s, conversation_id=seeded.a["conv"], tenant=B) == []
        assert {st.tenant for st in repo.list_steps(session=s, conversation_id=seeded.b["conv"], tenant=B)} == {B}


def test_save_step(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        with pytest.raises(ValueError, match="another conversation"):  # A's step id, written for B
            repo.save_step(session=s, subject=USER, step=ConversationStep(
                id=seeded.a["answer"], conversation_id=seeded.b["conv"], tenant=B, type="assistant_message",
                output="overwritten"))
        s.rollback()
        with pytest.raises(ValueError, match="turn of this user in this tenant"):  # B's answer on A's turn
            repo.save_step(session=s, subject=USER, step=ConversationStep(
                id="b-new-answer", conversation_id=seeded.b["conv"], tenant=B, type="assistant_message",
                turn_id=seeded.a["turn"]))
        s.rollback()
        repo.save_step(session=s, subject=USER, step=ConversationStep(
            id="b-new-question", conversation_id=seeded.b["conv"], tenant=B, type="user_message", output="more"))
    assert rows_of(seeded, A) == before


def test_delete_step(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.delete_step(session=s, step_id=seeded.a["answer"], conversation_id=seeded.a["conv"], tenant=B)
        repo.delete_step(session=s, step_id=seeded.b["answer"], conversation_id=seeded.b["conv"], tenant=B)
    assert rows_of(seeded, A) == before


def test_save_element(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        with pytest.raises(ValueError, match="another conversation"):
            repo.save_element(session=s, element=ConversationElement(
                id=seeded.a["panel"], conversation_id=seeded.b["conv"], tenant=B, content="overwritten"))
        s.rollback()
        repo.save_element(session=s, element=ConversationElement(
            id="b-new-panel", conversation_id=seeded.b["conv"], tenant=B, content="more"))
    assert rows_of(seeded, A) == before


def test_list_elements(seeded):
    with seeded.session() as s:
        assert repo.list_elements(session=s, conversation_id=seeded.a["conv"], tenant=B) == []
        assert [e.id for e in repo.list_elements(session=s, conversation_id=seeded.b["conv"], tenant=B)] == [
            seeded.b["panel"]]


def test_get_element(seeded):
    with seeded.session() as s:
        assert repo.get_element(session=s, element_id=seeded.a["panel"], conversation_id=seeded.a["conv"],
                                tenant=B) is None
        assert repo.get_element(session=s, element_id=seeded.a["panel"], conversation_id=seeded.b["conv"],
                                tenant=B) is None


def test_delete_element(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        repo.delete_element(session=s, element_id=seeded.a["panel"], conversation_id=seeded.a["conv"], tenant=B)
        repo.delete_element(session=s, element_id=seeded.a["panel"], conversation_id=seeded.b["conv"], tenant=B)
    assert rows_of(seeded, A) == before


def test_set_feedback(seeded):
    before = rows_of(seeded, A)
    with seeded.session() as s:
        step = repo.get_step(session=s, step_id=seeded.b["answer"])
        repo.set_feedback(session=s, step=step, value=1, comment="better")
    assert rows_of(seeded, A) == before


def test_feedback_summary(seeded):
    with seeded.session() as s:
        # B's rating of a step that points at A's turn (a row no write path allows) still counts nothing of A's
        s.add(ConversationStep(id="b-stray", conversation_id=seeded.b["conv"], tenant=B, type="assistant_message",
                               turn_id=seeded.a["turn"], feedback_value=1))
        s.commit()
        summary = repo.feedback_summary(session=s, tenant=B)
    assert sorted(summary) == [("helper", 3, 0, 1), ("helper", 3, 1, 1)]  # B's answer and B's run only


def test_rated_steps(seeded):
    with seeded.session() as s:
        rated = repo.rated_steps(session=s, tenant=B)
        assert rated, "B's own ratings are listed"
        for step, conversation, turn, question in rated:
            assert (step.tenant, conversation.tenant) == (B, B)
            assert turn is None or turn.tenant == B
            assert A not in step.output + (step.feedback_comment or "") + question


class _RaceSession:
    """A session whose first look-up of a step finds nothing although another writer inserts it right then: the
    window between save_step's `get` and its commit, where Chainlit's create and update of one step meet."""

    def __init__(self, session, db, row: ConversationStep) -> None:  # noqa: ANN001
        self._session, self._db, self._row, self._raced = session, db, row, False

    def get(self, model, ident):  # noqa: ANN001, ANN201
        if model is ConversationStep and not self._raced:
            self._raced = True
            with self._db.session() as other:
                other.add(self._row)
                other.commit()
            return None
        return self._session.get(model, ident)

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self._session, name)


def test_save_step_racing_another_insert_of_the_same_step_is_applied_as_its_update(seeded):
    conv = seeded.a["conv"]
    first = ConversationStep(id="a-raced", conversation_id=conv, tenant=A, type="assistant_message", output="")
    with seeded.session() as s:
        saved = repo.save_step(session=_RaceSession(s, seeded, first), subject=USER, step=ConversationStep(
            id="a-raced", conversation_id=conv, tenant=A, type="assistant_message", output="the whole answer"))
    assert saved.output == "the whole answer"
    with seeded.session() as s:
        assert s.get(ConversationStep, "a-raced").output == "the whole answer"  # not lost to the empty insert


def test_save_step_racing_another_conversations_insert_is_still_refused(seeded):
    # The row that won the race belongs to B's conversation: the retry is checked as an update and refused.
    theirs = ConversationStep(id="b-raced", conversation_id=seeded.b["conv"], tenant=B, type="assistant_message",
                              output="B's answer")
    with seeded.session() as s, pytest.raises(ValueError):
        repo.save_step(session=_RaceSession(s, seeded, theirs), subject=USER, step=ConversationStep(
            id="b-raced", conversation_id=seeded.a["conv"], tenant=A, type="assistant_message", output="A's words"))
    with seeded.session() as s:
        assert s.get(ConversationStep, "b-raced").output == "B's answer"
