from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture
def prompts_root(tmp_path: Path) -> Path:
    """A copy of the repo's prompts/ (tests never modify the real files)."""
    root = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", root)
    return root


@pytest.fixture
def store(prompts_root):
    from backend.prompts.store import PromptStore

    return PromptStore(prompts_root)
