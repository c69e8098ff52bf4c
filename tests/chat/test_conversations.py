"""Chat history (backend/conversations.py): every read and write is scoped to the owner *and* the tenants the
owner belongs to now; anything else is "not found" and an audited denial. Titles come from `fast`."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from backend.db.models import AuditEvent, ChatTurn
from tests.llm.fakes import make_config_dir, mock


def who(svc, sub: str, *groups: str):
    return svc.principal_from_claims({"sub": sub, "preferred_username": sub, "groups": list(groups)})


def denials(svc) -> list[AuditEvent]:
    with svc.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.kind == "denied").order_by(AuditEvent.id)))


def asked(conv, principal, conversation_id: str, text: str = "a question") -> None:
    """The user's message: what makes a conversation history (listed)."""
    assert conv.save_step(principal, conversation_id, step_id=f"ask-{conversation_id}", type="user_message",
                          name=principal.subject, output=text)


@pytest.fixture
def conv(services):
    return services.conversations


def test_owner_lists_and_reads_other_users_and_tenants_see_nothing_and_are_audited(services, conv):
    alice, bob, erin = who(services, "alice", "sales"), who(services, "bob", "sales"), who(services, "erin",
                                                                                          "engineering")
    assert conv.create(alice, conversation_id="t-1", tenant="sales", assistant="sales-assistant",
                       title="What is the discount limit?") is not None
    assert conv.save_step(alice, "t-1", step_id="s-1", type="user_message", name="alice", output="Discount?")
    assert conv.save_step(alice, "t-1", step_id="s-2", type="assistant_message", name="Atrium", output="10%")
    assert not conv.save_step(alice, "t-1", step_id="s-3", type="tool", name="search", output="passages")

    page = conv.list(alice)
    assert [c.id for c in page.conversations] == ["t-1"] and not page.has_more
    assert page.conversations[0].title == "What is the discount limit?"
    assert [s.output for s in conv.steps(alice, conv.get(alice, "t-1"))] == ["Discount?", "10%"]

    before = len(denials(services))
    # Same tenant, other user; other tenant: nothing listed, nothing readable, writable, renamable or deletable.
    for other in (bob, erin):
        assert conv.list(other).conversations == []
        assert conv.get(other, "t-1") is None
        assert not conv.save_step(other, "t-1", step_id="s-9", type="user_message", name="x", output="injected")
        assert not conv.rename(other, "t-1", "mine now")
        assert not conv.delete(other, "t-1")
        assert not conv.feedback(other, "s-2", 0)
        assert not conv.delete_step(other, "s-1")
    new = denials(services)[before:]
    assert len(new) == 12 and {d.route for d in new} == {"chat:conversation"}
    assert {(d.subject, d.reason) for d in new} == {("bob", "not_owner"), ("erin", "not_owner")}
    # Nothing changed.
    row = conv.get(alice, "t-1")
    assert row.title == "What is the discount limit?"
    assert [s.output for s in conv.steps(alice, row)] == ["Discount?", "10%"]
    assert all(s.feedback_value is None for s in conv.steps(alice, row))
    # A step id of someone else's conversation cannot be overwritten through one's own conversation either.
    assert conv.create(bob, conversation_id="t-2", tenant="sales", assistant="sales-assistant") is not None
    assert not conv.save_step(bob, "t-2", step_id="s-2", type="assistant_message", name="x", output="hijack")
    assert [s.output for s in conv.steps(alice, row)] == ["Discount?", "10%"]


def test_conversations_of_a_tenant_the_user_left_disappear(services, conv):
    maria = who(services, "maria", "sales", "finance")
    conv.create(maria, conversation_id="t-s", tenant="sales", assistant="sales-assistant", title="sales question")
    conv.create(maria, conversation_id="t-f", tenant="finance", assistant="finance-assistant", title="finance q")
    asked(conv, maria, "t-s")
    asked(conv, maria, "t-f")
    assert {c.id for c in conv.list(maria).conversations} == {"t-s", "t-f"}

    maria_now = who(services, "maria", "finance")  # removed from the sales group at the IdP
    assert [c.id for c in conv.list(maria_now).conversations] == ["t-f"]
    assert conv.get(maria_now, "t-s") is None
    assert denials(services)[-1].reason == "not_member"


def test_create_checks_the_profile_against_the_principal(services, conv):
    alice, bob = who(services, "alice", "sales"), who(services, "bob", "sales", "sales-editors")
    assert conv.create(alice, conversation_id="x1", tenant="engineering", assistant="eng-assistant") is None
    assert conv.create(alice, conversation_id="x2", tenant="sales", assistant="no-such-assistant") is None
    assert conv.create(alice, conversation_id="x3", tenant="sales", assistant="sales-assistant",
                       label="staging") is None
    assert conv.create(bob, conversation_id="x4", tenant="sales", assistant="sales-assistant",
                       label="staging") is not None
    # An id someone else already owns is not taken over.
    assert conv.create(alice, conversation_id="x4", tenant="sales", assistant="sales-assistant") is None
    assert conv.get(bob, "x4").subject == "bob"


def test_rename_feedback_delete_and_a_users_title_is_never_replaced(services, conv):
    alice = who(services, "alice", "sales")
    conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="hi " * 60)
    assert len(conv.get(alice, "t").title) == 80  # clipped for the sidebar
    assert conv.rename(alice, "t", "Discounts", source="model") and conv.get(alice, "t").title == "Discounts"
    assert conv.rename(alice, "t", "My discount notes")  # the user's own name
    assert conv.rename(alice, "t", "Model title", source="model")
    assert conv.get(alice, "t").title == "My discount notes"

    asked(conv, alice, "t")
    conv.save_step(alice, "t", step_id="a", type="assistant_message", name="Atrium", output="10%")
    assert conv.feedback(alice, "a", 0, "wrong number")
    step = conv.steps(alice, conv.get(alice, "t"))[1]
    assert (step.feedback_value, step.feedback_comment) == (0, "wrong number")
    assert [c.id for c in conv.list(alice, feedback=0).conversations] == ["t"]
    assert conv.list(alice, feedback=1).conversations == []
    with pytest.raises(ValueError):
        conv.feedback(alice, "a", 5)
    assert conv.feedback(alice, "a", None)
    assert conv.steps(alice, conv.get(alice, "t"))[1].feedback_value is None

    assert conv.delete(alice, "t")
    assert conv.get(alice, "t") is None and conv.list(alice).conversations == []
    # Another tab still showing it sends a message: the conversation does not come back.
    assert conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="x") is None
    assert not conv.save_step(alice, "t", step_id="late", type="user_message", name="alice", output="still here?")
    assert conv.list(alice).conversations == [] and conv.get(alice, "t") is None


def test_pages_and_search(services, conv):
    alice = who(services, "alice", "sales")
    for i in range(5):
        conv.create(alice, conversation_id=f"t{i}", tenant="sales", assistant="sales-assistant", title=f"topic {i}")
        conv.save_step(alice, f"t{i}", step_id=f"s{i}", type="user_message", name="alice",
                       output="renewal uplift" if i == 3 else "other")
    first = conv.list(alice, limit=2)
    assert [c.id for c in first.conversations] == ["t4", "t3"] and first.has_more
    second = conv.list(alice, limit=2, cursor="t3")
    assert [c.id for c in second.conversations] == ["t2", "t1"] and second.has_more
    last = conv.list(alice, limit=2, cursor="t1")
    assert [c.id for c in last.conversations] == ["t0"] and not last.has_more
    assert [c.id for c in conv.list(alice, search="TOPIC 2").conversations] == ["t2"]
    assert [c.id for c in conv.list(alice, search="uplift").conversations] == ["t3"]  # message text
    assert conv.list(alice, search="%").conversations == [] and conv.list(alice, search="_").conversations == []
    conv.create(alice, conversation_id="t5", tenant="sales", assistant="sales-assistant", title="20% off_list")
    asked(conv, alice, "t5")
    assert [c.id for c in conv.list(alice, search="20% off_").conversations] == ["t5"]


def test_title_is_written_by_fast_as_an_internal_task(tmp_path, make_settings):
    from backend.container import build_services

    fast = mock("fast", "anthropic/claude-haiku-5-5", '**Title:** "Discount approval limits".')
    smart = mock("smart", "anthropic/claude-sonnet-5-5", "smart")
    cfg = make_config_dir(tmp_path / "cfg", model_list=[fast, smart],
                          quotas={"requests_per_minute": None, "user_requests_per_minute": None,
                                  "tokens_per_day": None, "monthly_budget_usd": None})
    svc = build_services(make_settings(ATRIUM_CONFIG_DIR=str(cfg), ATRIUM_INGEST_WORKER="false"))
    try:
        alice = who(svc, "alice", "sales")
        conv = svc.conversations
        conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant",
                    title="who can approve a 15% discount on a renewal?")
        title = asyncio.run(conv.write_title(alice, "t", question="who can approve a 15% discount on a renewal?",
                                             answer="Your regional sales director."))
        assert title == "Discount approval limits" and conv.get(alice, "t").title == title
        with svc.db.session() as s:
            row = s.exec(select(ChatTurn).where(ChatTurn.channel == "internal")).one()
        assert (row.prompt_name, row.tier, row.assistant, row.subject) == ("title", "fast", "sales-assistant",
                                                                            "alice")
        # Someone else's conversation gets no title (and no model call).
        assert asyncio.run(conv.write_title(who(svc, "bob", "sales"), "t", question="q", answer="a")) is None
        conv.rename(alice, "t", "Mine")
        assert asyncio.run(conv.write_title(alice, "t", question="q", answer="a")) is None
        assert conv.get(alice, "t").title == "Mine"
    finally:
        svc.close()


def test_no_title_model_call_with_only_the_local_model(services, conv):
    """The in-process model writes no usable titles: `auto` keeps the first message and calls nothing."""
    alice = who(services, "alice", "sales")
    conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="first message")
    assert asyncio.run(conv.write_title(alice, "t", question="first message", answer="an answer")) is None
    with services.db.session() as s:
        assert list(s.exec(select(ChatTurn))) == []
    assert conv.get(alice, "t").title == "first message"


def test_feedback_report_is_for_editors_and_per_prompt_version(services, conv):
    from backend.db.models import ChatTurn
    from backend.errors import Forbidden

    alice, bob = who(services, "alice", "sales"), who(services, "bob", "sales", "sales-editors")
    with services.db.session() as s:
        turn = ChatTurn(tenant="sales", subject="alice", assistant="sales-assistant", prompt_version=3,
                        model="anthropic/claude-haiku-5-5")
        foreign = ChatTurn(tenant="engineering", subject="erin", assistant="eng-assistant", prompt_version=9)
        s.add(turn)
        s.add(foreign)
        s.commit()
        s.refresh(turn)
        s.refresh(foreign)
    conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="q")
    conv.save_step(alice, "t", step_id="q1", type="user_message", name="alice", output="discount cap?")
    conv.save_step(alice, "t", step_id="a1", type="assistant_message", name="Atrium", output="10%",
                   turn_id=turn.id)
    conv.save_step(alice, "t", step_id="q2", type="user_message", name="alice", output="and for renewals?")
    # A turn id of another tenant is never joined (its prompt version would leak): not an answer of this tenant.
    conv.save_step(alice, "t", step_id="a2", type="assistant_message", name="Atrium", output="5%",
                   turn_id=foreign.id)
    conv.feedback(alice, "a1", 0, "it is 15%")
    conv.feedback(alice, "a2", 1)
    # What the chat's thumbs do: rate the run that wraps an answer; the report shows the answer and its turn.
    conv.save_step(alice, "t", step_id="q3", type="user_message", name="alice", output="who approves?")
    conv.save_step(alice, "t", step_id="r3", type="run", name="on_message", output="ignored")
    conv.save_step(alice, "t", step_id="n3", type="assistant_message", name="Atrium", output="Adding files…",
                   parent_id="r3")  # a notice in the same run: not the answer
    conv.save_step(alice, "t", step_id="a3", type="assistant_message", name="Atrium", output="Your director",
                   parent_id="r3", turn_id=turn.id)
    assert conv.feedback(alice, "r3", 0, "wrong person")
    # A run whose only reply is a refusal (too long, no access, a quota) or an upload's status: no prompt version
    # answered, so its rating is not prompt feedback ("unknown" in the studio before).
    conv.save_step(alice, "t", step_id="q4", type="user_message", name="alice", output="x" * 24_000)
    conv.save_step(alice, "t", step_id="r4", type="run", name="on_message", output="")
    conv.save_step(alice, "t", step_id="n4", type="assistant_message", name="Atrium",
                   output="**Sorry — the message is too long**", parent_id="r4")
    assert conv.feedback(alice, "r4", 0, "Refused my message")
    conv.save_step(alice, "t", step_id="n5", type="assistant_message", name="Atrium", output="✅ note.txt — ready")
    assert conv.feedback(alice, "n5", 1)

    with pytest.raises(Forbidden):
        conv.feedback_report(alice, "sales")
    report = conv.feedback_report(bob, "sales")
    assert [(r["prompt_version"], r["helpful"], r["not_helpful"]) for r in report["summary"]] == [(3, 0, 2)]
    by_answer = {i["answer"]: i for i in report["items"]}
    assert set(by_answer) == {"10%", "Your director"}
    assert (by_answer["Your director"]["question"], by_answer["Your director"]["comment"],
            by_answer["Your director"]["prompt_version"]) == ("who approves?", "wrong person", 3)
    assert (by_answer["10%"]["question"], by_answer["10%"]["comment"]) == ("discount cap?", "it is 15%")
    assert by_answer["10%"]["prompt_version"] == 3
    assert sorted(i["answer"] for i in conv.feedback_report(bob, "sales", value=0)["items"]) == ["10%",
                                                                                                 "Your director"]
    assert conv.feedback_report(who(services, "dave", "engineering", "engineering-editors"),
                                "engineering")["items"] == []


def test_a_long_question_is_cut_in_the_feedback_report(services, conv):
    from backend.db.models import ChatTurn

    alice, bob = who(services, "alice", "sales"), who(services, "bob", "sales", "sales-editors")
    with services.db.session() as s:
        turn = ChatTurn(tenant="sales", subject="alice", assistant="sales-assistant", prompt_version=1)
        s.add(turn)
        s.commit()
        s.refresh(turn)
    conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="q")
    conv.save_step(alice, "t", step_id="q", type="user_message", name="alice", output="why " * 5_000)
    conv.save_step(alice, "t", step_id="r", type="run", name="on_message", output="")
    conv.save_step(alice, "t", step_id="a", type="assistant_message", name="Atrium", output="Because.",
                   parent_id="r", turn_id=turn.id)
    conv.feedback(alice, "r", 0)
    [item] = conv.feedback_report(bob, "sales")["items"]
    assert len(item["question"]) <= 601 and item["question"].endswith("…")
    assert item["question"].startswith("why why")


def test_a_tab_can_tell_its_conversation_was_deleted(services, conv):
    alice, bob = who(services, "alice", "sales"), who(services, "bob", "sales")
    conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="q")
    assert not conv.was_deleted(alice, "t") and not conv.was_deleted(alice, "never-created")
    assert conv.delete(alice, "t")
    assert conv.was_deleted(alice, "t")
    assert not conv.was_deleted(bob, "t")  # only its owner is told (nobody else learns the id existed)


def test_a_chat_left_without_a_message_is_not_history(services, conv):
    """A conversation is listed once the user sent something; empty ones (a visit, a new chat, an assistant
    switch — rows older versions created) are not, in the list or in a search."""
    alice = who(services, "alice", "sales")
    conv.create(alice, conversation_id="empty", tenant="sales", assistant="sales-assistant")
    conv.create(alice, conversation_id="started", tenant="sales", assistant="sales-assistant")
    conv.save_step(alice, "started", step_id="run-0", type="run", name="on_chat_start", output="")
    conv.create(alice, conversation_id="asked", tenant="sales", assistant="sales-assistant")
    conv.save_step(alice, "asked", step_id="q", type="user_message", name="alice", output="discounts?")
    # Chainlit names a thread after its first message, and may do so before that message is stored.
    conv.create(alice, conversation_id="named", tenant="sales", assistant="sales-assistant", title="renewals")
    assert {c.id for c in conv.list(alice).conversations} == {"asked", "named"}
    assert conv.list(alice, search="New conversation").conversations == []
    assert conv.get(alice, "empty") is not None  # still the owner's: reopening its link works
    conv.save_step(alice, "empty", step_id="q2", type="user_message", name="alice", output="")  # only files
    assert {c.id for c in conv.list(alice).conversations} == {"asked", "named", "empty"}


def test_one_look_at_someone_elses_conversation_is_one_denial(services, conv, monkeypatch):
    """Chainlit asks the data layer several times for one page load: the same denial (user, conversation,
    action) within a short window is one audit row, so one look does not raise `suspicious_access`."""
    import backend.chat.conversations as conversations_module

    alice, carol = who(services, "alice", "sales"), who(services, "carol", "sales", "sales-admins")
    conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="mine")
    before = len(denials(services))
    for _ in range(12):
        assert conv.get(carol, "t") is None
    new = denials(services)[before:]
    assert [(d.subject, d.reason, d.detail["action"]) for d in new] == [("carol", "not_owner", "read")]
    assert not conv.rename(carol, "t", "x")  # another kind of attempt is its own row
    assert [d.detail["action"] for d in denials(services)[before:]] == ["read", "rename"]
    with services.db.session() as s:
        assert list(s.exec(select(AuditEvent).where(AuditEvent.kind == "suspicious_access"))) == []
    monkeypatch.setattr(conversations_module, "DENIAL_REPEAT_S", 0.0)  # the window has passed: a new attempt
    assert conv.get(carol, "t") is None
    counted: dict[str, int] = {}  # a repeat within the audit's window is counted on its row (governance/audit.py)
    for d in denials(services)[before:]:
        counted[d.detail["action"]] = counted.get(d.detail["action"], 0) + d.count
    assert counted == {"read": 2, "rename": 1}


def test_answer_sources_are_kept_with_the_conversation_and_only_the_owners(services, conv):
    alice, bob = who(services, "alice", "sales"), who(services, "bob", "sales")
    conv.create(alice, conversation_id="t", tenant="sales", assistant="sales-assistant", title="q")
    conv.save_step(alice, "t", step_id="a", type="assistant_message", name="Atrium", output="10%\n\nSources: [1] P")
    assert conv.save_element(alice, "t", element_id="e1", for_id="a", name="[1] P", display="side",
                             content="**Pricing** — p.3\n\n> reps approve up to 10%")
    assert conv.save_element(alice, "t", element_id="e2", for_id="a", name="[2] Q", display="bogus",
                             content="x" * 50_000)
    rows = conv.elements(alice, conv.get(alice, "t"))
    assert [(e.id, e.for_id, e.name, e.display) for e in rows] == [("e1", "a", "[1] P", "side"),
                                                                    ("e2", "a", "[2] Q", "side")]
    assert rows[0].tenant == "sales" and len(rows[1].content) == 20_000
    assert conv.element(alice, "t", "e1").content.endswith("up to 10%")

    # Someone else reads, writes or deletes nothing, and cannot take over an element id of alice's.
    assert conv.element(bob, "t", "e1") is None
    assert not conv.save_element(bob, "t", element_id="e3", for_id="a", name="x", display="side", content="x")
    assert not conv.delete_element(bob, "t", "e1")
    conv.create(bob, conversation_id="b", tenant="sales", assistant="sales-assistant", title="bob's")
    assert not conv.save_element(bob, "b", element_id="e1", for_id=None, name="hijack", display="side",
                                 content="hijack")
    assert conv.element(bob, "b", "e1") is None  # not through his own conversation either
    assert conv.element(alice, "t", "e1").name == "[1] P"

    assert conv.delete_element(alice, "t", "e2")
    assert [e.id for e in conv.elements(alice, conv.get(alice, "t"))] == ["e1"]
    assert conv.delete_step(alice, "a")  # a deleted message takes its panels with it
    assert conv.elements(alice, conv.get(alice, "t")) == []
    conv.save_element(alice, "t", element_id="e4", for_id="a2", name="[1] P", display="side", content="p")
    assert conv.delete(alice, "t")
    with services.db.session() as s:
        from backend.db.models import ConversationElement
        assert list(s.exec(select(ConversationElement).where(ConversationElement.conversation_id == "t"))) == []


def test_a_first_message_of_only_files_names_the_conversation_after_them(services, conv):
    from backend.chat.conversations import files_title

    assert files_title(["pricing-2027.pdf"]) == "Uploaded pricing-2027.pdf"
    assert files_title(["a.pdf", "b.docx"]) == "Uploaded a.pdf and b.docx"
    assert files_title(["a.pdf", "b.docx", "c.md"]) == "Uploaded a.pdf and 2 more files"
    assert files_title(["  "]) == "" and len(files_title(["x" * 200])) == 80

    carol, bob = who(services, "carol", "sales", "sales-admins"), who(services, "bob", "sales")
    # The chat may name it before the message's own write created it, or after.
    assert conv.name_from_files(carol, "new", ["pricing-2027.pdf"], tenant="sales", assistant="sales-assistant")
    assert conv.get(carol, "new").title == "Uploaded pricing-2027.pdf"
    conv.create(carol, conversation_id="made", tenant="sales", assistant="sales-assistant")
    assert conv.name_from_files(carol, "made", ["a.pdf", "b.pdf"], tenant="sales", assistant="sales-assistant")
    assert conv.get(carol, "made").title == "Uploaded a.pdf and b.pdf"
    # A titled conversation keeps its title; someone else's is not touched; a forged profile creates nothing.
    conv.create(carol, conversation_id="titled", tenant="sales", assistant="sales-assistant", title="discounts")
    conv.name_from_files(carol, "titled", ["a.pdf"], tenant="sales", assistant="sales-assistant")
    assert conv.get(carol, "titled").title == "discounts"
    assert not conv.name_from_files(bob, "made", ["evil.pdf"], tenant="sales", assistant="sales-assistant")
    assert conv.get(carol, "made").title == "Uploaded a.pdf and b.pdf"
    assert not conv.name_from_files(carol, "eng", ["a.pdf"], tenant="engineering", assistant="eng-assistant")
    assert conv.get(carol, "eng") is None


def test_the_sidebar_names_the_department_for_users_in_several(services, conv):
    """maria (sales + finance) sees "Sales · …" / "Finance · …"; alice (sales only) sees the bare title. The
    rename dialog starts from the listed name: the department prefix is not saved into the title."""
    from chainlit.types import Pagination, ThreadFilter
    from chainlit.user import User

    from ui.history import AtriumDataLayer

    maria = who(services, "maria", "sales", "finance")
    for cid, tenant, assistant in (("s", "sales", "sales-assistant"), ("f", "finance", "finance-assistant")):
        conv.create(maria, conversation_id=cid, tenant=tenant, assistant=assistant, title="Q3 targets")
        conv.save_step(maria, cid, step_id=f"q-{cid}", type="user_message", name="maria", output="Q3 targets?")
    alice = who(services, "alice", "sales")
    conv.create(alice, conversation_id="a", tenant="sales", assistant="sales-assistant", title="Q3 targets")
    conv.save_step(alice, "a", step_id="q-a", type="user_message", name="alice", output="Q3 targets?")
    layer = AtriumDataLayer(lambda: services)

    async def names(user: str, groups: list[str]) -> dict[str, str]:
        await layer.create_user(User(identifier=user, metadata={"claims": {"sub": user, "groups": groups},
                                                                "provider": "password"}))
        page = await layer.list_threads(Pagination(first=20), ThreadFilter())
        return {t["id"]: t["name"] for t in page.data}

    async def rename_and_list() -> dict[str, str]:
        await layer.create_user(User(identifier="maria", metadata={
            "claims": {"sub": "maria", "groups": ["sales", "finance"]}, "provider": "password"}))
        await layer.update_thread("s", name="Sales · Q3 targets (EMEA)")
        return await names("maria", ["sales", "finance"])

    assert asyncio.run(names("maria", ["sales", "finance"])) == {"s": "Sales · Q3 targets",
                                                                 "f": "Finance · Q3 targets"}
    assert asyncio.run(names("alice", ["sales"])) == {"a": "Q3 targets"}
    assert asyncio.run(rename_and_list())["s"] == "Sales · Q3 targets (EMEA)"
    assert conv.get(maria, "s").title == "Q3 targets (EMEA)"
