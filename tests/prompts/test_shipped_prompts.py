"""Every prompt the repo ships loads, validates and renders; a broken file is a clear error, not a 500."""

from __future__ import annotations

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
    assert "prompts/sales/deal-desk/v0001.md" in message and "line 2" in message and "quote" in message
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
