"""PromptService's rules without HTTP: what a save, a label move, a preview and a try accept, what they refuse
and what they record (the routes' own behaviour is tests/api/test_prompts.py)."""

from __future__ import annotations

from typing import Any

import pytest

from backend.auth.principal import Principal
from backend.errors import Conflict, Forbidden, Invalid, NotFound
from backend.prompts.drafts import number_problem
from backend.prompts.service import PromptService
from backend.tenants import TenantRegistry
from tests.conftest import REPO

BODY = "You help {{user_name}}.\n\nContext:\n{{context}}\n"


def conf(**extra: Any) -> dict[str, Any]:
    """A valid prompt configuration, with `extra` on top."""
    return {"description": "test", "tier": "local", "variables": ["user_name", "context"], **extra}


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, **fields: Any) -> object:
        self.events.append((kind, fields))
        return None


class Tiers:
    def __init__(self, live: list[str]) -> None:
        self.live = live

    def tiers(self) -> list[str]:
        return list(self.live)

    def tier_models(self) -> dict[str, dict[str, Any]]:
        return {t: {"models": [f"{t}-model"]} for t in self.live}

    def resolve_tier(self, wanted: str, allowed: list[str]) -> str:
        for tier in [wanted, *allowed]:
            if tier in self.live and tier in allowed:
                return tier
        raise RuntimeError("no model")


def person(subject: str, tenant: str, *roles: str, acting_for: str | None = None) -> Principal:
    return Principal(subject=subject, name=subject, tenants={tenant: frozenset({"member", *roles})},
                     acting_for=acting_for)


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def owners() -> dict[str, str]:
    """key subject -> the person who owns that key (what people_behind reads from SQL)."""
    return {}


@pytest.fixture
def service(store, sink, owners) -> PromptService:
    registry = TenantRegistry.load(REPO / "config" / "tenants.yaml")
    return PromptService(store=store, registry=registry, llm=Tiers(["local"]), audit=sink,
                         people=lambda names: frozenset(n for name in names for n in (name, owners.get(name)) if n))


def test_a_save_names_every_problem_at_once_and_records_nothing(service, sink):
    bob = person("bob", "sales", "prompt_editor")
    with pytest.raises(Invalid) as exc:
        service.save(bob, "sales", "sales-assistant", body=BODY, config=conf(tier="huge", model="gpt-x"),
                     message="  ", base_version=99, route="/r")
    fields = {p["field"] for p in exc.value.extra["problems"]}
    assert {"message", "base_version", "tier", "model"} <= fields
    assert exc.value.code == "invalid_prompt"
    assert sink.events == []


def test_a_save_is_recorded_with_before_and_after(service, sink, store):
    bob = person("bob", "sales", "prompt_editor")
    latest = store.latest("sales", "sales-assistant")
    out = service.save(bob, "sales", "sales-assistant", body=BODY, config=conf(tier="local"),
                       message=" shorter ", base_version=latest, route="/api/t/sales/prompts/sales-assistant/versions")
    assert out["version"] == latest + 1 and out["body"] == BODY
    [(kind, fields)] = sink.events
    assert kind == "prompt_version_created"
    assert fields["subject"] == "bob" and fields["tenant"] == "sales" and fields["status"] == 201
    assert fields["route"] == "/api/t/sales/prompts/sales-assistant/versions"
    assert fields["detail"]["before"]["version"] == latest and fields["detail"]["after"]["version"] == latest + 1
    assert store.get("sales", "sales-assistant", latest + 1).config["message"] == "shorter"


def test_a_save_on_an_old_base_is_a_conflict_naming_the_newer_version(service, store):
    bob, dave = person("bob", "sales", "prompt_editor"), person("dave", "sales", "prompt_editor")
    base = store.latest("sales", "sales-assistant")
    service.save(dave, "sales", "sales-assistant", body=BODY, config=conf(), message="first", base_version=base,
                 route="/r")
    with pytest.raises(Conflict) as exc:
        service.save(bob, "sales", "sales-assistant", body=BODY + "!", config=conf(), message="second",
                     base_version=base, route="/r")
    assert exc.value.code == "version_conflict"
    assert exc.value.extra["latest_version"] == base + 1 and exc.value.extra["latest"]["author"] == "dave"


def test_unknown_assistants_versions_and_tenants_are_not_found(service):
    with pytest.raises(NotFound) as exc:
        service.version("sales", "nope", 1)
    assert exc.value.code == "assistant_not_found"
    with pytest.raises(NotFound) as exc:
        service.version("sales", "sales-assistant", 999)
    assert exc.value.code == "version_not_found"
    with pytest.raises(NotFound) as exc:
        service.overview("nosuch")
    assert exc.value.code == "tenant_not_found"


def test_a_new_label_needs_create(service, sink):
    bob = person("bob", "sales", "prompt_editor")
    with pytest.raises(Invalid) as exc:
        service.move_label(bob, "sales", "sales-assistant", "canary", version=1, create=False, route="/r")
    assert exc.value.code == "unknown_label" and sink.events == []
    out = service.move_label(bob, "sales", "sales-assistant", "canary", version=1, create=True, route="/r")
    assert out["to"] == 1 and out["labels"]["canary"] == 1
    assert [k for k, _ in sink.events] == ["prompt_label_moved"]
    assert sink.events[0][1]["detail"]["label"] == "canary"


def test_approval_refusals_are_recorded_and_count_the_person_behind_a_key(service, sink, store, owners):
    frank = person("frank", "finance", "prompt_editor")
    key = person("key:abc", "finance", "prompt_editor", "tenant_admin")
    owners["key:abc"] = "fiona"
    saved = service.save(key, "finance", "finance-assistant", body=BODY, config=conf(), message="via a key",
                         base_version=store.latest("finance", "finance-assistant"), route="/r")
    sink.events.clear()
    with pytest.raises(Forbidden) as exc:  # an editor: only a tenant admin moves production
        service.move_label(frank, "finance", "finance-assistant", "production", version=saved["version"],
                           create=False, route="/api/t/finance/prompts/finance-assistant/labels/production")
    assert exc.value.code == "approval_required"
    fiona = person("fiona", "finance", "tenant_admin")
    with pytest.raises(Forbidden):  # the key's owner wrote it: a second person must approve
        service.move_label(fiona, "finance", "finance-assistant", "production", version=saved["version"],
                           create=False, route="/r")
    assert [(k, f["reason"], f["status"], f["subject"]) for k, f in sink.events] == \
        [("denied", "approval_required", 403, "frank"), ("denied", "approval_required", 403, "fiona")]
    # Staging is not under the rule.
    service.move_label(frank, "finance", "finance-assistant", "staging", version=saved["version"], create=False,
                       route="/r")
    assert sink.events[-1][0] == "prompt_label_moved"


def test_preview_reports_problems_without_raising_and_notes_a_tier_that_is_not_live(service):
    bob = person("bob", "sales", "prompt_editor")
    bad = service.preview(bob, "sales", "sales-assistant", body=BODY, config=conf(max_tokens=0), base_version=0)
    assert bad["ok"] is False and bad["diff"] is None
    assert [p["field"] for p in bad["problems"]] == ["max_tokens"]
    good = service.preview(bob, "sales", "sales-assistant", body=BODY, config=conf(tier="smart"), base_version=1)
    assert good["ok"] is True and good["diff"] is not None
    assert "smart is not available now: until it is, answers come from local" in good["warnings"]


def test_a_trial_takes_a_draft_or_a_version_and_its_reply_says_which(service):
    bob = person("bob", "sales", "prompt_editor")
    with pytest.raises(Invalid) as exc:
        service.trial(bob, "sales", "sales-assistant", version=None, body=None, config={})
    assert exc.value.code == "invalid_request"
    saved = service.trial(bob, "sales", "sales-assistant", version=1, body=None, config={})
    assert saved.prompt.version == 1
    reply = service.trial_reply(saved, {"answer": "hi", "warnings": ["w"]}, tier="local", model="m")
    assert (reply["prompt_version"], reply["draft"], reply["warnings"]) == (1, False, ["w"])
    draft = service.trial(bob, "sales", "sales-assistant", version=None, body=BODY, config=conf(tier="smart"))
    reply = service.trial_reply(draft, {"answer": "hi"}, tier="local", model="m")
    assert reply["prompt_version"] is None and reply["draft"] is True
    assert reply["warnings"][0] == "smart is not available now: answered by local (m)"


def test_number_settings_are_worded_for_editors():
    assert number_problem("max_tokens", 2.5).startswith("2.5 is not a whole number: use a whole number of tokens")
    assert number_problem("temperature", "warm").startswith("'warm' is not a number")
    assert number_problem("temperature", "").startswith("enter a number between")
