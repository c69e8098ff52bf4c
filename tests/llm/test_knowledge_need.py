"""Which messages need the knowledge base (backend/llm/knowledge_need.py): conversation and tasks on the user's
own text do not; anything that asks about the company does, including a question wrapped in a greeting."""

from __future__ import annotations

import asyncio
import json

import pytest

from backend.chat.pipeline import NO_ANSWER, NO_CONTEXT
from backend.knowledge.cli import ingest_paths
from backend.llm.knowledge_need import conversational, needs_knowledge
from backend.settings import REPO_ROOT
from tests.llm.fakes import FakeOpenAI
from tests.llm.test_models import alice, run, turn_row

NO_KB = [  # message, reason
    ("hi", "greeting"),
    ("Good evening, Atrium 👋", "greeting"),
    ("hello! I'm Sam from the Lisbon office", "greeting"),
    ("thanks so much for your help today", "thanks"),
    ("Thank you, that answers my question.", "thanks"),
    ("ok cool, wish me luck", "thanks"),
    # The reviewer's: refused with "I don't know" before (first turn and after history).
    ("Thanks, that helps.", "thanks"),
    ("that's all, thanks!", "thanks"),
    ("nice one", "thanks"),
    ("lol", "reaction"),
    ("👍", "emoji or punctuation only"),
    ("?", "emoji or punctuation only"),  # the model asks what they need
    ("no that's it", "thanks"),
    ("Hallo", "greeting"),
    ("merci", "thanks"),
    ("gracias", "thanks"),
    ("ok", "thanks"),
    ("great", "thanks"),
    ("perfect", "thanks"),
    ("got it", "thanks"),
    ("cool", "thanks"),
    ("awesome, thank you so much!", "thanks"),
    # More social messages, in six languages besides English.
    ("Thanks a bunch, Atrium!", "thanks"),
    ("thanks in advance", "thanks"),
    ("no worries, have a great weekend", "thanks"),
    ("nope, all good now", "thanks"),
    ("That's all for now, cheers", "thanks"),
    ("never mind, got it", "thanks"),
    ("yes thanks, that's everything", "thanks"),
    ("you're a lifesaver, thanks", "thanks"),
    ("ok 👍", "thanks"),
    ("haha nice 😂", "reaction"),
    ("xD", "reaction"),
    (":)", "emoji or punctuation only"),
    ("🙏🙏", "emoji or punctuation only"),
    ("…", "emoji or punctuation only"),
    ("thanks :D", "thanks"),
    ("¡Hola! 👋", "greeting"),
    ("Guten Morgen zusammen", "greeting"),
    ("Vielen Dank, alles klar!", "thanks"),
    ("Merci beaucoup, bonne journée", "thanks"),
    ("Salut !", "greeting"),
    ("Muchas gracias, perfecto", "thanks"),
    ("Buenos días", "greeting"),
    ("Grazie mille!", "thanks"),
    ("Ciao, buongiorno", "greeting"),
    ("Dank je wel", "thanks"),
    ("Goedemorgen allemaal", "greeting"),
    ("Muito obrigada!", "thanks"),
    ("Bom dia", "greeting"),
    ("Are you a bot?", "small talk"),
    ("Hi! What can you do?", "small talk"),
    ("Hello! What can you help me with?", "small talk"),  # the commonest opener (was "I don't know")
    ("How can you help us today?", "small talk"),
    ("What can I ask you about?", "small talk"),
    ("Rewrite this more politely: 'Send me the report by Friday or else.'", "rewrite of supplied text"),
    ("Could you translate to Spanish: 'The meeting moved to 3pm.'", "rewrite of supplied text"),
    ("Fix the typos in this: 'teh quick brwn fox jumpd'", "rewrite of supplied text"),
    ("Summarise this:\nQ3 revenue was flat.\nChurn rose in EMEA.\nHiring is paused.", "rewrite of supplied text"),
    ("Suggest a title for this conversation", "title request"),
    ("PR title for: retry uploads on 503", "title request"),
    ("Sentiment of this review, positive or negative: 'Loved the onboarding, hated the invoice.'",
     "classification of supplied text into the options it lists"),
    ("Why does this fail?\n```python\nfor i in range(10) print(i)\n```", "code question with its own code"),
    ("Explain this regex: `^[a-z0-9_]+@[a-z]+\\.com$`", "code question with its own code"),
]

SOCIAL = ("greeting", "thanks", "reaction", "small talk", "emoji or punctuation only")

NEEDS_KB = [
    "What can you help me with on discounts?",
    "What do you know about the travel policy?",
    "hi, what's the discount cap?",
    "thanks! and who approves discounts over 20%?",
    "Good morning! How many vacation days do I get?",
    "hey — discount cap for Acme",
    "hi, all the discount caps",
    "thanks, that's the cap for 3-year deals?",
    "hi, that's the Enterprise plan, right?",
    "ok, and the EU meal limit?",
    "hi, can you check the approval threshold for me?",
    "thanks. Also, what's the per diem in Berlin?",
    "What is the parental leave policy in the Tokyo office?",
    "What can you tell me about our pricing?",
    "Rewrite our refund policy in plain English",
    "Summarize the expense policy",
    "Summarize every rule that applies to paying a new supplier: onboarding, PO, quotes, deposits.",
    "Translate the travel policy into German",
    "Rewrite this more politely: 'Send the PO now.' What is our PO threshold?",
    "Give me a title and also tell me the discount cap",
    "Title of the doc that covers travel?",
    "name of the VP of sales?",
    "Is this covered by the travel policy: 'Uber from the airport at 2am'",
    "Which objection category is this: 'We are locked in until 2026.'",
    "Write a Python retry decorator with jitter",
    "Does this follow our API conventions? ```def get_dashboards(limit=25): return db.query(limit)```",
    "make it shorter",  # a first turn: there is no earlier answer to shorten
    "",
    # A social word next to a question about the company, in any of the languages above.
    "thanks — and the discount cap?",
    "ok, and Zurich?",
    "perfect, now the EU meal limit",
    "got it — who signs off above 20%?",
    "great, is the cap per deal or per year?",
    "nice one, send me the pricing sheet",
    "thanks in advance: what's the per diem in Berlin?",
    "cheers, what's the mileage rate?",
    "thanks for now, the Zurich limit later",
    "lol what's the cap",
    ":) what is the discount cap",
    "👍 and the travel cap?",
    "?? what's the approval threshold",
    "that's it? only 14 days?",
    "this is all?",
    "no, the other one",
    "no, I meant the Tokyo office",
    "yes",  # an answer to the assistant's question ("shall I list the steps?"), which may need passages
    "yes please",
    "no",
    "20%?",
    "€?",
    "top 5 deals this quarter",
    "toll",
    "merci, et le plafond de remise ?",
    "Bonjour ! Quel est le plafond de remise ?",
    "gracias, ¿y el límite de gastos?",
    "hola, ¿cuál es el límite de descuento?",
    "Danke! Wie hoch ist das Tagegeld in Berlin?",
    "ciao, qual è il limite di sconto?",
    "Hallo, wat is de kortingslimiet?",
    "olá, qual é o prazo de reembolso?",
]


@pytest.mark.parametrize(("message", "reason"), NO_KB)
def test_messages_that_need_no_passages(message: str, reason: str) -> None:
    need = needs_knowledge(message)
    assert (need.needed, need.reason) == (False, reason)
    assert reason in need.context and "no passages from the knowledge base" in need.context


@pytest.mark.parametrize("message", NEEDS_KB)
def test_company_questions_need_the_knowledge_base(message: str) -> None:
    assert needs_knowledge(message).needed


@pytest.mark.parametrize(("message", "reason"), [(m, r) for m, r in NO_KB if r in SOCIAL])
def test_social_messages_after_history_and_without_a_rewrite(message: str, reason: str) -> None:
    # After an answer too; and the query rewrite (backend/chat/rewrite.py) skips them by the same check.
    need = needs_knowledge(message, follow_up=True)
    assert (need.needed, need.reason) == (False, reason)
    assert conversational(message) == reason


@pytest.mark.parametrize("message", NEEDS_KB)
def test_company_questions_need_the_knowledge_base_after_history_too(message: str) -> None:
    if message != "make it shorter":  # after an answer, that one is a rewrite of it (below)
        assert needs_knowledge(message, follow_up=True).needed
    assert conversational(message) is None


@pytest.mark.parametrize("message", ["make it shorter", "make that friendlier", "give me a shorter version of that",
                                     "Summarise that in two lines", "translate it into German", "simplify the above"])
def test_a_follow_up_may_work_on_the_previous_answer(message: str) -> None:
    assert needs_knowledge(message, follow_up=True).reason == "rewrite of the previous answer"
    assert needs_knowledge(message).needed  # a first turn: there is no previous answer


@pytest.mark.parametrize("message", [
    "and for the Tokyo office?",
    # "that" starts a clause about company facts; it does not point at the previous answer.
    "Summarize every rule that applies to paying a new supplier: onboarding, PO, quotes, deposits.",
    "rewrite our refund policy so that it is shorter",
])
def test_a_follow_up_about_the_company_still_needs_the_knowledge_base(message: str) -> None:
    assert needs_knowledge(message, follow_up=True).needed


def test_every_question_of_the_retrieval_benchmark_needs_the_knowledge_base() -> None:
    # Answerable questions and other departments' questions alike: the "I don't know" rate that
    # bench/retrieval_quality.py measures must stay what the chat does.
    rows = [json.loads(line) for line in (REPO_ROOT / "bench/data/retrieval_questions.jsonl").read_text().splitlines()
            if line.strip()]
    assert len(rows) >= 134
    assert [r["question"] for r in rows if not needs_knowledge(r["question"]).needed] == []


def test_lookups_and_heavy_questions_of_the_routing_benchmark_need_the_knowledge_base() -> None:
    rows = [json.loads(line) for path in sorted((REPO_ROOT / "bench/data").glob("routing_questions*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    company = [r for r in rows if r["kind"] in ("lookup", "analysis", "compare", "draft", "plan", "reasoning",
                                                "synthesis")]
    assert len(company) >= 250
    assert [r["question"] for r in company if not needs_knowledge(r["question"]).needed] == []


# -- the chat pipeline: retrieval finds nothing -------------------------------------------------------------

def _pipeline(model_services, server: FakeOpenAI):
    """Sales and finance demo documents ingested; `smart` answered by a local OpenAI-protocol server that keeps
    every request (so a test sees whether the model was called, and with which system prompt)."""
    smart = {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-test",
                                                        "api_base": server.url}}
    svc = model_services(model_list=[smart], fallbacks=[], ATRIUM_INGEST_WORKER="false")
    for tenant in ("sales", "finance"):
        paths = [str(p) for p in sorted((REPO_ROOT / "demo" / "corpus" / tenant).glob("*.md"))]
        assert ingest_paths(svc, tenant=tenant, paths=paths) == 0
    return svc


def _system(request: dict) -> str:
    return request["messages"][0]["content"]


@pytest.mark.parametrize(("message", "reason"), [
    ("hi", "greeting"),
    ("Thanks, that helps.", "thanks"),
    ("👍", "emoji or punctuation only"),
    ("Rewrite this more politely: 'Send me the signed order form today, no more excuses.'",
     "rewrite of supplied text"),
])
def test_a_message_that_needs_no_passage_reaches_the_model(model_services, message: str, reason: str) -> None:
    with FakeOpenAI(text="Hello Alice") as server:
        svc = _pipeline(model_services, server)
        # The retriever really finds nothing for it (else this test could not fail).
        assert asyncio.run(svc.knowledge.retrieve(principal=alice(svc), tenant="sales", query=message)) == []
        result = run(svc, message, tier="smart")
        again = run(svc, message, tier="smart")
    assert result.answer == "Hello Alice from gpt-4.1" and result.citations == []
    assert not result.answer.startswith(NO_ANSWER.split("—")[0])
    assert len(server.requests) == 2 and not again.cached  # addressed to the user: never served from the cache
    system = _system(server.requests[0])
    assert "(no passages from the knowledge base: none are needed for this message" in system
    assert NO_CONTEXT not in system and "VP of Sales" not in system
    assert server.requests[0]["messages"][-1] == {"role": "user", "content": message}
    row = turn_row(svc, result.turn_id)
    assert row.route_reason == f"explicit tier smart; no passages needed: {reason}"
    assert (row.model, row.chunk_ids, row.prompt_tokens) == (result.model, [], 11) and row.model


@pytest.mark.parametrize("message", [
    "What is the parental leave policy in the Tokyo office?",  # in no tenant's documents
    "What's the daily meal allowance in San Francisco?",  # finance's document, asked in sales
    "hi, what's the daily meal allowance in San Francisco?",  # a greeting does not unlock it
])
def test_a_company_question_without_passages_is_still_refused_without_a_model_call(model_services,
                                                                                  message: str) -> None:
    with FakeOpenAI() as server:
        svc = _pipeline(model_services, server)
        result = run(svc, message, tier="smart")
    assert result.answer.startswith("I don't know — nothing in the Sales knowledge base covers this")
    assert server.requests == [] and result.citations == [] and result.prompt_tokens == 0
    row = turn_row(svc, result.turn_id)
    assert (row.model, row.route_reason, row.outcome) == (None, "no relevant passages in the knowledge base", "ok")


def test_passages_found_keep_the_normal_context(model_services) -> None:
    with FakeOpenAI() as server:
        svc = _pipeline(model_services, server)
        result = run(svc, "Who must approve a discount of more than 20%?", tier="smart")
    assert result.citations and "VP of Sales" in _system(server.requests[0])
    assert "no passages needed" not in turn_row(svc, result.turn_id).route_reason


@pytest.mark.parametrize("message", ["Which deal did I mention?", "What did you say about the cap?",
                                     "Can you recap our conversation?", "what was my first question?",
                                     "Which office did we talk about earlier?"])
def test_a_question_about_the_conversation_needs_no_passages_on_a_follow_up(message):
    need = needs_knowledge(message, follow_up=True)
    assert (need.needed, need.reason) == (False, "question about this conversation")
    assert needs_knowledge(message).needed  # on a first turn there is no conversation to answer from


@pytest.mark.parametrize("message", ["What did the policy say before 2024?", "Who approves what you suggested?",
                                     "What is the discount cap?"])
def test_company_questions_on_a_follow_up_still_need_passages(message):
    assert needs_knowledge(message, follow_up=True).needed
