from __future__ import annotations

import pytest


@pytest.fixture
def store(prompts_root):
    from backend.prompts.store import PromptStore

    return PromptStore(prompts_root)
