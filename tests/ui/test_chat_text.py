"""What the chat says (ui/chat_text.py): cut and stopped answers keep valid markdown, refusals read as sentences
and give advice the user can follow, and a note sent with files is told apart from a question."""

from __future__ import annotations

import pytest

from ui.chat_text import (
    CUT_NOTE,
    STOPPED_NOTE,
    asks_something,
    close_markdown,
    cut_answer,
    history_of,
    history_text,
    not_allowed,
    sorry,
    source_label,
    source_panel,
    stopped_answer,
    too_long,
)


@pytest.mark.parametrize(("cut", "closed"), [
    ("7. **Stage 6 – Closed Won / Closed Lost (100% / 0%)", "7. **Stage 6 – Closed Won / Closed Lost (100% / 0%)**"),
    ("7. **Stage 6 – Closed Won ", "7. **Stage 6 – Closed Won**"),  # no space before a closing marker
    ("1. **Multi-year** deals\n7. **", "1. **Multi-year** deals\n7."),  # nothing to emphasise yet: dropped
    ("an *important", "an *important*"),
    ("* item one\n* item *two", "* item one\n* item *two*"),  # bullets are not emphasis
    ("use `GET /items", "use `GET /items`"),
    ("see ~~old", "see ~~old~~"),
    ("```python\nprint('a')", "```python\nprint('a')\n```"),
    ("```\na ** b\n```\nand **bold", "```\na ** b\n```\nand **bold**"),  # markers inside code do not count
    ("all **closed** and `code`", "all **closed** and `code`"),
    ("**bold *both", "**bold *both***"),
    ("2 * 3 = 6 and `__init__` or __init__", "2 * 3 = 6 and `__init__` or __init__"),
])
def test_open_markdown_is_closed(cut, closed):
    assert close_markdown(cut) == closed


def test_a_cut_answer_closes_its_markdown_before_the_note_and_keeps_the_signoff_last():
    assert cut_answer("7. **Stage 6 – Closed", "") == f"7. **Stage 6 – Closed**\n\n{CUT_NOTE}"
    signoff = "\n\n-- Deal Desk"
    assert cut_answer("Ask **your" + signoff, signoff) == f"Ask **your**\n\n{CUT_NOTE}\n\n-- Deal Desk"
    assert cut_answer("", "") == ""  # nothing written: a warning says why, no note


def test_a_stopped_answer_is_marked_and_its_notes_stay_out_of_the_history():
    kept = stopped_answer("Our API pagination conventions are **designed")
    assert kept == f"Our API pagination conventions are **designed**\n\n{STOPPED_NOTE}"
    assert history_text(kept) == "Our API pagination conventions are **designed**"
    assert history_text(f"Ten percent.\n\n{CUT_NOTE}\n\nSources: [1] Pricing") == "Ten percent."


def test_refusals_read_as_sentences():
    quota = ("This request may need up to 2,560 tokens (its prompt plus max_tokens) but only 100 of Sales's "
             "2,000 tokens for today remain")
    assert sorry(quota) == f"**Sorry.** {quota}."
    assert sorry("the model provider failed after retries; try again shortly") == (
        "**Sorry.** The model provider failed after retries; try again shortly.")
    assert not_allowed("you are not a member of tenant 'sales'") == (
        "**Not allowed.** You are not a member of tenant 'sales'.")


def test_the_too_long_advice_fits_the_role():
    member = too_long(24_000, can_add_documents=False)
    admin = too_long(24_000, can_add_documents=True)
    for text in (member, admin):
        assert "too long" in text and "24,000" in text and "20,000" in text
    assert "knowledge base" not in member and "attach" not in member
    assert "attach the text as a file" in admin and "knowledge base" in admin


@pytest.mark.parametrize(("text", "question"), [
    ("Please add this note", False),
    ("Adding the Yankee price sheet", False),
    ("What does it say about discounts?", True),
    ("Added. Who approves 25%? Thanks", True),
])
def test_a_note_with_files_is_not_a_question(text, question):
    assert asks_something(text) is question


def test_a_source_is_labelled_once_and_its_panel_is_the_passage():
    assert source_label(2, "Pricing Rules", "Pricing Rules > Discounts > Approval thresholds", 3) == (
        "[2] Pricing Rules › Approval thresholds, p.3")
    assert source_label(1, "Runbook", None, None) == "[1] Runbook"
    # The panel's title is the label: the body is the quote (and a deep section's full path), not the label again.
    assert source_panel("Pricing Rules > Discounts", "Up to 10%.\n\nAbove: a manager.") == (
        "> Up to 10%.\n>\n> Above: a manager.")
    assert source_panel("A > B > C", "text") == "_A › B › C_\n\n> text"


def test_a_reopened_conversation_is_the_history_of_its_answered_questions():
    def step(kind: str, output: str, parent: str | None = "run") -> dict:
        return {"type": kind, "output": output, "parentId": parent if kind != "user_message" else None}

    steps = [
        step("user_message", "What is the discount limit?"),
        step("run", ""),
        step("assistant_message", "**This conversation was deleted** …"),  # a notice before the answer
        step("assistant_message", f"Ten percent.\n\n{CUT_NOTE}\n\nSources: [1] Pricing"),
        step("user_message", "x" * 20_001),
        step("assistant_message", "**Sorry — the message is too long** …", parent=None),  # a refusal
        step("user_message", "And above that?"),
        step("assistant_message", f"A manager must\n\n{STOPPED_NOTE}"),
        step("assistant_message", "Task manually stopped.", parent=None),
    ]
    assert history_of(steps) == [
        {"role": "user", "content": "What is the discount limit?"}, {"role": "assistant", "content": "Ten percent."},
        {"role": "user", "content": "And above that?"}, {"role": "assistant", "content": "A manager must"}]


def test_where_the_other_groups_assistants_are():
    from backend.groups import Placement
    from ui.chat_text import elsewhere_note

    finance = Placement(tenant="finance", tenant_name="Finance", group="regulated",
                        public_url="https://finance.atrium.example.com", here=("default",))
    hr = Placement(tenant="hr", tenant_name="HR", group="people", here=("default",))  # no public_url configured
    assert elsewhere_note([hr, finance]) == (
        "Your Finance assistants are at https://finance.atrium.example.com. Your HR assistants are at the Atrium "
        "address of deployment group 'people' (ask your administrator).")


def test_the_reply_says_unobtrusively_who_answered_and_the_history_leaves_it_out():
    from ui.chat_text import answered_by

    grounded = answered_by("atrium/grounded", {"mode": "grounded", "score": 1.0})
    assert "quoted from the sources" in grounded and "no model wrote it" in grounded
    small = answered_by("local/smollm2", {"mode": "generative", "checked": False})
    assert "built-in demo model" in small and "can be wrong" in small
    checked = answered_by("hosted_vllm/llama", {"mode": "checked", "score": 0.5})
    assert "written by hosted_vllm/llama; checked against the sources: 50% supported" in checked
    assert "what they say follows" in answered_by("hosted_vllm/llama", {"mode": "fallback", "score": 0.0})
    assert answered_by("", None) == ""  # "I don't know": nobody answered
    for reply in ("Hello Alice!" + small, "Up to 10% [1]\n\nSources: [1] Pricing" + grounded):
        assert history_text(reply) in ("Hello Alice!", "Up to 10% [1]")


def test_two_passages_of_one_section_get_distinct_labels_numbered_as_the_answers_markers():
    from backend.knowledge.retrieval import Citation
    from ui.chat_text import source_labels

    def passage(chunk: str, page: int | None = None) -> Citation:
        return Citation(chunk_id=chunk, document_id="d1", title="Pricing Rules", quote="…", score=0.8, page=page,
                        section="Pricing Rules > Discount approval")

    labels = source_labels([passage("c1"), passage("c2"), passage("c3", page=2)])
    assert labels == ["[1] Pricing Rules › Discount approval", "[2] Pricing Rules › Discount approval",
                      "[3] Pricing Rules › Discount approval, p.2"]
    assert len(set(labels)) == 3  # each names its own side panel
    # No label is the start of another (the chat links a panel wherever its name appears in the message).
    assert not any(a != b and b.startswith(a) for a in labels for b in labels)


def test_a_cut_answer_and_its_continuation_are_one_answer_in_the_history():
    from ui.chat_text import CONTINUED, continued_history, ends_cut

    def step(kind: str, output: str) -> dict:
        return {"type": kind, "output": output, "parentId": "run" if kind != "user_message" else None}

    assert "type **continue**" in CUT_NOTE
    cut = [step("user_message", "Who approves 25%?"),
           step("assistant_message", f"The VP of Sales must\n\n{CUT_NOTE}\n\nSources: [1] Pricing")]
    assert ends_cut(cut)
    steps = [*cut, step("user_message", "continue"),
             step("assistant_message", f"{CONTINUED}approve it [1].\n\nSources: [1] Pricing")]
    assert not ends_cut(steps)
    assert history_of(steps) == [{"role": "user", "content": "Who approves 25%?"},
                                 {"role": "assistant", "content": "The VP of Sales must approve it [1]."}]
    # A conversation stored before the note changed is still known to end with a cut answer.
    assert ends_cut([cut[0], step("assistant_message", "The VP\n\n_(answer cut at the length limit — ask me to "
                                                         "continue)_")])
    # "continue" after an answer that was not cut is a question of its own.
    uncut = [cut[0], step("assistant_message", "The VP of Sales."), step("user_message", "continue"),
             step("assistant_message", f"{CONTINUED}more")]
    assert [m["content"] for m in history_of(uncut)][2] == "continue"

    history = [{"role": "user", "content": "Who approves 25%?"},
               {"role": "assistant", "content": "The VP of Sales must\n\n-- Deal Desk"}]
    assert continued_history(history, " approve it.\n\n-- Deal Desk", "\n\n-- Deal Desk") == [
        history[0], {"role": "assistant", "content": "The VP of Sales must approve it.\n\n-- Deal Desk"}]
