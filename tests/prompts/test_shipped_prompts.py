"""Every prompt the repo ships loads, validates and renders; a broken file is a clear error, not a 500."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from backend.prompts.schema import validate_version
from backend.prompts.store import PromptFileInvalid, PromptStore, parse_prompt_file
from backend.tenants import TenantRegistry
from tests.conftest import REPO

SHIPPED = sorted((REPO / "prompts").glob("*/*/v*.md"))


def test_every_configured_assistant_has_a_production_prompt():
    registry = TenantRegistry.load(REPO / "config" / "tenants.yaml")
    store = PromptStore(REPO / "prompts")
    pairs = [(t.id, a.name) for t in registry.all() for a in t.assistants]
    assert len(pairs) >= 4
    for tenant, assistant in pairs:
        version = store.resolve(tenant, assistant, "production")
        assert version.body.strip(), f"{tenant}/{assistant} has an empty prompt"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_prompt_file_is_valid(path: Path):
    meta, body = parse_prompt_file(path.read_text(), source=str(path))
    validate_version(meta, body)  # raises, listing every problem
    labels = yaml.safe_load((path.parent / "labels.yaml").read_text())
    assert labels["labels"]["production"] >= 1


def test_a_broken_front_matter_names_the_file_and_the_fix(tmp_path: Path):
    folder = tmp_path / "sales" / "deal-desk"
    folder.mkdir(parents=True)
    (folder / "v0001.md").write_text("---\ndescription: Deal desk: quotes\n---\nYou are helpful.\n")
    with pytest.raises(PromptFileInvalid) as info:
        PromptStore(tmp_path).get("sales", "deal-desk", 1)
    message = info.value.message
    assert str(folder / "v0001.md") in message and "line 2" in message and "quote" in message
    assert info.value.status_code == 503


def test_chat_with_a_broken_prompt_file_is_a_clear_503(prompts_root: Path, make_api_client, login_as):
    root = prompts_root
    broken = root / "sales" / "deal-desk" / "v0001.md"
    broken.write_text(broken.read_text().replace('"Deal desk: quotes and discount checks"',
                                                 "Deal desk: quotes and discount checks"))
    client = make_api_client(ATRIUM_PROMPTS_DIR=str(root))
    r = client.post("/api/t/sales/chat", json={"assistant": "deal-desk", "message": "hello"},
                    cookies=login_as("alice"))
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "prompt_file_invalid" and "deal-desk/v0001.md" in r.json()["detail"]


def test_chat_on_an_assistant_without_a_prompt_is_a_503_naming_the_folder_and_the_fix(prompts_root: Path,
                                                                                        make_api_client, login_as):
    """A server misconfiguration, not the caller's 404: the message names the real ATRIUM_PROMPTS_DIR."""
    folder = prompts_root / "sales" / "deal-desk"
    shutil.rmtree(folder)
    client = make_api_client(ATRIUM_PROMPTS_DIR=str(prompts_root))
    r = client.post("/api/t/sales/chat", json={"assistant": "deal-desk", "message": "hello"},
                    cookies=login_as("alice"))
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "prompt_not_available"
    assert r.json()["detail"].startswith(f"{folder} does not exist, so sales/deal-desk has no prompt: create v0001.md")
    r = client.post("/api/t/sales/v1/chat/completions", cookies=login_as("alice"),
                    json={"model": "deal-desk", "messages": [{"role": "user", "content": "hello"}]})
    assert r.status_code == 503 and r.json()["error"]["code"] == "prompt_not_available", r.text
    assert str(folder) in r.json()["error"]["message"]
