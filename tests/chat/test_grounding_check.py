"""The grounding check over a mock provider on the `local` tier (a self-hosted model a department runs): a model
scripted to invent numbers is not shown as fact — its unsupported sentences are struck through and said to be, and
a mostly unsupported answer is followed by what the sources say; a supported answer is shown as written. What is
streamed is what the result says; the turn records the mode and score. models.yaml `answers:` and a prompt
version's `answer_mode` switch the mode."""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import replace

from sqlmodel import select

from backend.chat.types import ChatRequest, TurnResult
from backend.db.models import ChatTurn
from backend.knowledge.cli import ingest_paths
from backend.seed import DEMO_CORPUS
from tests.knowledge.conftest import member_of
from tests.llm.fakes import mock

FINANCE = member_of("finance")
QUESTION = "What is the hotel cap per night?"
INVENTED = "Hotels are capped at 20 nights per trip. Every hotel stay earns a 37% rebate for the traveller."
SUPPORTED = "Hotels are capped at $250 per night in standard locations and $375 per night in high-cost cities [1]."
MIXED = ("Hotels are capped at $250 per night in standard locations [1]. In high-cost cities the cap is $400 per "
         "night.")


def local_model(text: str) -> list[dict]:
    """The `local` tier served by a remote model (LiteLLM mock_response): not the in-process one."""
    return [mock("local", "anthropic/claude-haiku-5-5", text)]


def with_policy(model_services, text: str, **kw):
    svc = model_services(model_list=local_model(text), **kw)
    if not svc.knowledge.document_count(tenant="finance"):
        with contextlib.redirect_stdout(io.StringIO()):
            assert ingest_paths(svc, tenant="finance", paths=[str(DEMO_CORPUS / "finance" / "expense-policy.md")],
                                kb="default") == 0
    return svc


def ask(svc, message: str = QUESTION, **kw) -> tuple[str, TurnResult]:
    async def go() -> tuple[str, TurnResult]:
        shown, result = [], None
        req = ChatRequest(tenant="finance", assistant="finance-assistant", message=message, channel="api", **kw)
        async for item in svc.chat.stream(FINANCE, req):
            if isinstance(item, TurnResult):
                result = item
            else:
                shown.append(item)
        assert result is not None
        return "".join(shown), result

    return asyncio.run(go())


def row(svc, turn_id: int) -> ChatTurn:
    with svc.db.session() as session:
        return session.exec(select(ChatTurn).where(ChatTurn.id == turn_id)).one()


def test_invented_numbers_are_not_shown_as_fact_and_the_sources_answer_follows(model_services):
    svc = with_policy(model_services, INVENTED)
    shown, result = ask(svc)
    assert shown == result.answer  # what the user saw is what the result and the history keep
    assert "~~Hotels are capped at 20 nights per trip.~~ _(not supported by the cited sources)_" in shown
    assert "~~Every hotel stay earns a 37% rebate for the traveller.~~" in shown
    assert "What they say:" in shown and "$250 per night" in shown and "$375 per night" in shown
    g = result.grounding
    assert g["mode"] == "fallback" and g["checked"] and g["score"] == 0.0
    assert [u["sentence"] for u in g["unsupported"]] == INVENTED.replace(". ", ".\n").splitlines()
    assert "20 nights" in g["unsupported"][0]["reason"] and "37%" in g["unsupported"][1]["reason"]
    recorded = row(svc, result.turn_id)
    assert (recorded.answer_mode, recorded.grounding) == ("fallback", 0.0)
    assert recorded.completion_tokens > 0  # the model was called (and is billed) all the same


def test_a_supported_answer_is_shown_as_written_and_an_unsupported_sentence_in_it_is_marked(model_services):
    svc = with_policy(model_services, SUPPORTED)
    shown, result = ask(svc)
    assert shown == result.answer == SUPPORTED
    assert result.grounding["mode"] == "checked" and result.grounding["score"] == 1.0
    assert result.model == "anthropic/claude-haiku-5-5"

    svc = with_policy(model_services, MIXED)
    shown, result = ask(svc)
    assert shown.startswith("Hotels are capped at $250 per night in standard locations [1]. ~~In high-cost")
    assert "What they say:" not in shown  # half supported: marked, not replaced
    assert result.grounding["mode"] == "checked" and result.grounding["score"] == 0.5
    assert "400" in result.grounding["unsupported"][0]["reason"]


def test_models_yaml_and_the_prompt_version_choose_the_mode(model_services):
    unchecked = with_policy(model_services, INVENTED, answers={"local": {"grounding_check": False}})
    shown, result = ask(unchecked)
    assert shown == INVENTED and result.grounding["mode"] == "generative" and not result.grounding["checked"]

    grounded = with_policy(model_services, INVENTED, answers={"local": {"mode": "grounded"}})
    shown, result = ask(grounded)
    assert "20 nights" not in shown and "$250 per night" in shown and result.model == "atrium/grounded"
    assert result.grounding["reason"] == "models.yaml answers.local.mode"

    prompt = unchecked.prompts.resolve("finance", "finance-assistant", "production")
    draft = replace(prompt, config={**prompt.config, "answer_mode": "grounded"})
    shown, result = ask(unchecked, prompt_override=draft)
    assert "$250 per night" in shown and result.grounding["reason"] == "the prompt version's answer_mode"


NEGATED = ("Personal expenses may be charged to a corporate card. Hotels are capped at $250 per night in standard "
           "locations.")


def test_a_sentence_that_negates_its_source_is_not_shown_as_fact(model_services):
    """Similarity alone would pass it: "may be charged" is as close to "must never be charged" as a paraphrase."""
    svc = with_policy(model_services, NEGATED)
    shown, result = ask(svc, "Can I charge personal expenses to my corporate card, and what is the hotel cap?")
    assert shown.startswith("~~Personal expenses may be charged to a corporate card.~~ _(not supported by the "
                            "cited sources)_ Hotels are capped at $250 per night in standard locations ["), shown
    [unsupported] = result.grounding["unsupported"]
    assert unsupported["reason"].startswith("says the opposite of the cited passage") and \
        "must never be charged" in unsupported["reason"]
    # Said as the passage says it, it is supported.
    svc = with_policy(model_services, "Personal expenses must never be charged to a corporate card.")
    shown, result = ask(svc, "Can I charge personal expenses to my corporate card?")
    assert result.grounding["score"] == 1.0 and "~~" not in shown


MARKED = ("Hotels are capped at $250 per night in standard locations. Rail is preferred over flying for journeys of "
          "under four hours [9]. Every hotel stay earns a 37% rebate.")


def test_inline_markers_match_the_sources_line_in_checked_and_unchecked_answers(model_services):
    import re

    for answers, mode in ((None, "checked"), ({"local": {"grounding_check": False}}, "generative")):
        svc = with_policy(model_services, MARKED, answers=answers)
        shown, result = ask(svc)
        assert shown == result.answer and result.grounding["mode"] == mode
        sentences = shown.split(". ")
        # A supported sentence the model left unmarked gets the marker of the passage that says it ...
        [hotels] = [c for c in re.findall(r"\[(\d+)\]", sentences[0])]
        assert "$250 per night" in result.citations[int(hotels) - 1].quote
        # ... a marker naming no cited passage ([9] of five) is replaced by the right one ...
        assert "[9]" not in shown
        [rail] = re.findall(r"\[(\d+)\]", sentences[1])
        assert "Rail is preferred" in result.citations[int(rail) - 1].quote
        # ... an unsupported sentence gets none (and is struck through when checked).
        assert not re.findall(r"\[(\d+)\]", sentences[2])
        assert ("~~" in sentences[2]) == (mode == "checked")
        assert {int(n) for n in re.findall(r"\[(\d+)\]", shown)} <= set(range(1, len(result.citations) + 1))
