"""Deployment groups and per-tenant limits in tenants.yaml: which tenants a process serves (ATRIUM_DEPLOYMENT_GROUPS),
and a mistake in either stops the start-up naming the file, the field and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from backend.config_files import ConfigError
from backend.tenants import TenantLimits, TenantRegistry
from tests.conftest import REPO

SHIPPED = REPO / "config" / "tenants.yaml"


def _write(tmp_path: Path, change: Callable[[dict], None]) -> Path:
    data = yaml.safe_load(SHIPPED.read_text())
    change(data)
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _tenant(data: dict, tid: str) -> dict:
    return next(t for t in data["tenants"] if t["id"] == tid)


def test_a_process_sees_only_the_tenants_of_its_groups() -> None:
    everything = TenantRegistry.load(SHIPPED)
    assert everything.served_groups is None
    assert everything.ids() == ["sales", "engineering", "finance"]

    regulated = TenantRegistry.load(SHIPPED, served="regulated")
    assert regulated.ids() == ["finance"]
    assert regulated.get("sales") is None and not regulated.is_served("sales")
    assert [t.id for t in regulated.all()] == ["finance"]
    # The whole file stays known: to say where another group's tenant is served, and to render the manifests.
    assert regulated.locate("sales") is not None
    assert [t.id for t in regulated.every()] == ["sales", "engineering", "finance"]
    name, group = regulated.group_of("sales")
    assert (name, group.public_url, group.host) == ("default", "https://atrium.example.com", "atrium.example.com")

    both = TenantRegistry.load(SHIPPED, served=" default , regulated ")
    assert both.ids() == ["sales", "engineering", "finance"] and both.served_groups == {"default", "regulated"}
    assert TenantRegistry.load(SHIPPED, served="").served_groups is None  # empty = unset = every group


def test_serving_a_group_that_does_not_exist_stops_the_start_up() -> None:
    with pytest.raises(ConfigError) as info:
        TenantRegistry.load(SHIPPED, served="default,regulatd")
    message = str(info.value)
    assert "ATRIUM_DEPLOYMENT_GROUPS names 'regulatd'" in message and "default, regulated" in message
    assert "did you mean 'regulated'?" in message


def test_serve_s_banner_says_what_the_process_serves_and_when_nobody_can_sign_in(make_settings, caplog) -> None:
    from backend.cli import serve_banner

    regulated = TenantRegistry.load(SHIPPED, served="regulated")
    banner = serve_banner(make_settings(), regulated, "http://127.0.0.1:8003").splitlines()
    assert banner[0] == "Atrium: open http://127.0.0.1:8003 — demo users in README.md (e.g. alice / atrium)"
    assert banner[1].startswith("serving deployment group(s) regulated (ATRIUM_DEPLOYMENT_GROUPS): tenants finance;")
    assert len(banner) == 2
    # Every group, no group line; demo login off and no IdP: the chat is unusable, said on the terminal and logged.
    with caplog.at_level("WARNING", logger="atrium"):
        banner = serve_banner(make_settings(ATRIUM_DEV_LOGIN="false"), TenantRegistry.load(SHIPPED), "http://h:1")
    assert banner.splitlines()[0] == "Atrium: open http://h:1"
    assert "nobody can sign in" in banner and "OIDC_ISSUER" in banner and "ATRIUM_DEV_LOGIN=true" in banner
    assert [r.getMessage() for r in caplog.records] == ["nobody can sign in to the chat"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="atrium"):  # with an IdP the demo login is off by default: fine
        banner = serve_banner(make_settings(ATRIUM_DEV_LOGIN="false", OIDC_ISSUER="https://idp.example.com"),
                              TenantRegistry.load(SHIPPED), "http://h:1")
    assert banner == "Atrium: open http://h:1" and not caplog.records


def test_a_tenant_in_an_undeclared_group_names_the_closest_one(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: _tenant(d, "finance").update(deployment_group="regulatd"))
    with pytest.raises(ConfigError) as info:
        TenantRegistry.load(path)
    assert "tenant 'finance': deployment_group `regulatd`" in str(info.value)
    assert "did you mean `regulated`?" in str(info.value)


def test_without_a_groups_section_every_named_group_exists_with_default_sizes(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d.pop("deployment_groups"))
    registry = TenantRegistry.load(path)
    assert sorted(registry.groups) == ["default", "regulated"]
    assert registry.groups["regulated"].public_url is None
    assert registry.groups["default"].web.replicas == 2


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["deployment_groups"].__setitem__("Bad_Name", {}), "'Bad_Name' must be a lowercase slug"),
    (lambda d: d["deployment_groups"]["default"].update(public_url="atrium.example.com"),
     "is not an http(s) URL with a host"),
    (lambda d: d["deployment_groups"]["default"]["web"].update(max_replicas=1), "max_replicas (1) is below replicas"),
    (lambda d: d["deployment_groups"]["default"]["web"].update(replica=3), "did you mean `replicas`?"),
    (lambda d: d.update(deployment_groups=[]), "`deployment_groups:` must map group names"),
    (lambda d: _tenant(d, "sales").update(limits={"model_calls": 0}),
     "limits.model_calls: Input should be greater than or equal to 1"),
    (lambda d: _tenant(d, "sales").update(limits={"streams": -1}), "a limit is null for no cap or a positive number"),
    (lambda d: d["defaults"]["limits"].update(stream=3), "did you mean `streams`?"),
])
def test_a_mistake_in_groups_or_limits_names_the_field(tmp_path: Path, change: Callable[[dict], None],
                                                       expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        TenantRegistry.load(_write(tmp_path, change))
    assert expected in str(info.value)
    assert str(tmp_path / "tenants.yaml") in str(info.value)


def test_a_tenant_s_limits_fall_back_to_the_defaults_field_by_field(tmp_path: Path) -> None:
    def change(d: dict) -> None:
        d["defaults"]["limits"] = {"model_calls": 4, "streams": 2, "ingestion_jobs": 1}
        _tenant(d, "finance")["limits"] = {"streams": 6, "ingestion_jobs": None}

    registry = TenantRegistry.load(_write(tmp_path, change))
    assert registry.limits("finance") == TenantLimits(model_calls=4, streams=6, ingestion_jobs=None)
    assert registry.limits("sales") == TenantLimits(model_calls=4, streams=2, ingestion_jobs=1)
    shipped = TenantRegistry.load(SHIPPED)
    assert shipped.limits("sales") == TenantLimits(model_calls=8, streams=8, ingestion_jobs=1, uploads=4)
