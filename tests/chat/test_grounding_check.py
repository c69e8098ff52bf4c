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
