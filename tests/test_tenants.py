"""config/tenants.yaml: a typo at any level, a department without assistants, a duplicate id or a YAML syntax error
stops the start-up with one message naming the absolute file, the tenant, the key and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from backend.config_files import ConfigError
from backend.tenants import TenantRegistry
from tests.conftest import REPO
from tests.llm.fakes import make_config_dir


def _load_with(tmp_path: Path, change: Callable[[dict], None]) -> str:
    """The error of loading the shipped tenants.yaml after `change` (a typo)."""
    data = yaml.safe_load((REPO / "config" / "tenants.yaml").read_text())
    change(data)
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        TenantRegistry.load(path)
    return str(info.value)


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _sales(data: dict) -> dict:
    return data["tenants"][0]


def _engineering(data: dict) -> dict:
    return data["tenants"][1]


@pytest.mark.parametrize(("change", "where", "typo", "meant"), [
    (lambda d: _rename(_sales(d), "assistants", "asistants"), "tenant 'sales': ", "asistants", "assistants"),
    (lambda d: _rename(_sales(d)["quotas"], "tokens_per_day", "token_per_day"), "tenant 'sales': quotas: ",
     "token_per_day", "tokens_per_day"),
    (lambda d: _rename(_sales(d)["model_policy"], "default_tier", "default_teir"), "tenant 'sales': model_policy: ",
     "default_teir", "default_tier"),
    (lambda d: _rename(_sales(d)["assistants"][1], "title", "titel"), "tenant 'sales': assistants.1: ",
     "titel", "title"),
    (lambda d: _rename(_sales(d)["dify"], "app_key_env", "app_key"), "tenant 'sales': dify: ", "app_key",
     "app_key_env"),
    (lambda d: _rename(_sales(d)["roles"], "prompt_editor", "prompt_editors"), "tenant 'sales': roles: ",
     "prompt_editors", "prompt_editor"),
    (lambda d: _rename(_sales(d)["roles"]["tenant_admin"], "any_of", "anyof"),
     "tenant 'sales': roles.tenant_admin: ", "anyof", "any_of"),
    (lambda d: _rename(_sales(d)["match"], "claim", "claims"), "tenant 'sales': match: ", "claims", "claim"),
    (lambda d: _rename(_sales(d), "require_approval", "requires_approval"), "tenant 'sales': ",
     "requires_approval", "require_approval"),
    (lambda d: _rename(_engineering(d)["release_gate"], "min_score", "min_scor"), "tenant 'engineering': "
     "release_gate: ", "min_scor", "min_score"),
    (lambda d: _rename(_engineering(d), "release_gate", "release_gates"), "tenant 'engineering': ",
     "release_gates", "release_gate"),
    (lambda d: _rename(d["platform"], "platform_admin", "platform_admins"), "platform: ", "platform_admins",
     "platform_admin"),
    (lambda d: _rename(d["platform"]["platform_admin"], "any_of", "any_off"), "platform: platform_admin: ",
     "any_off", "any_of"),
    (lambda d: _rename(d, "tenants", "tenant"), "", "tenant", "tenants"),
])
def test_an_unknown_key_at_any_level_names_file_tenant_key_and_the_closest_valid_one(tmp_path, change, where, typo,
                                                                                     meant):
    message = _load_with(tmp_path, change)
    assert message == f"{tmp_path / 'tenants.yaml'}: {where}unknown key `{typo}`: did you mean `{meant}`?"


def test_an_unknown_key_with_nothing_close_lists_the_valid_keys(tmp_path):
    message = _load_with(tmp_path, lambda d: _sales(d)["quotas"].update(burst=5))
    assert "tenant 'sales': quotas: unknown key `burst`: the valid keys here are requests_per_minute, " in message


@pytest.mark.parametrize("change", [lambda t: t.update(assistants=[]), lambda t: t.pop("assistants")],
                         ids=["empty", "absent"])
def test_a_tenant_without_assistants_is_a_start_up_error(tmp_path, change):
    message = _load_with(tmp_path, lambda d: change(d["tenants"][2]))
    assert message.startswith(f"{tmp_path / 'tenants.yaml'}: tenant 'finance': assistants: ")
    assert "a department needs at least one assistant" in message and "prompts/<tenant>/<name>/" in message


def test_a_duplicate_tenant_id_names_the_file_and_the_id(tmp_path):
    message = _load_with(tmp_path, lambda d: d["tenants"][2].update(id="sales"))
    assert message == (f"{tmp_path / 'tenants.yaml'}: tenant id 'sales' is used by 2 tenants: "
                       "give each tenant its own id")


def test_a_yaml_syntax_error_names_the_absolute_file_and_the_line(tmp_path, monkeypatch):
    (tmp_path / "tenants.yaml").write_text("tenants:\n  - id: sales\n    name: Sales\n   match: {claim: groups}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        TenantRegistry.load(Path("tenants.yaml"))  # relative, as ATRIUM_CONFIG_DIR=config would give
    assert str(info.value).startswith(f"{tmp_path / 'tenants.yaml'}: invalid YAML at line 4, column 4 (")


def test_the_shipped_config_and_the_test_fixtures_load(tmp_path):
    shipped = TenantRegistry.load(REPO / "config" / "tenants.yaml")
    assert shipped.ids() == ["sales", "engineering", "finance"] and all(t.assistants for t in shipped.all())
    assert shipped.source == REPO / "config" / "tenants.yaml"
    cfg = make_config_dir(tmp_path, model_list=[], policy={"allowed_tiers": ["fast", "smart"]})
    narrowed = TenantRegistry.load(cfg / "tenants.yaml")
    assert {t.model_policy.default_tier for t in narrowed.all()} == {"smart"}


def test_the_release_gate_is_off_unless_a_tenant_turns_it_on_and_its_minimum_is_a_share(tmp_path):
    shipped = TenantRegistry.load(REPO / "config" / "tenants.yaml")
    gates = {t.id: (t.release_gate.enabled, t.release_gate.min_score) for t in shipped.all()}
    assert gates == {"sales": (False, None), "engineering": (True, 0.6), "finance": (False, None)}
    message = _load_with(tmp_path, lambda d: _engineering(d)["release_gate"].update(min_score=60))
    assert "tenant 'engineering': release_gate.min_score: " in message and "less than or equal to 1" in message
