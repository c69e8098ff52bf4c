"""Every environment variable the settings read is documented in the README and in .env.example."""

from __future__ import annotations

import pytest

from backend.settings import Settings
from tests.conftest import REPO

ENV_NAMES = sorted(f.alias for f in Settings.model_fields.values() if f.alias)


@pytest.mark.parametrize("doc", ["README.md", ".env.example"])
def test_every_setting_is_documented(doc):
    text = (REPO / doc).read_text()
    missing = [name for name in ENV_NAMES if name not in text]
    assert not missing, f"document these in {doc}: {missing}"


def test_readme_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    first_section = text.split("\n## ", 2)[1]
    assert first_section.startswith("The two commands")
    assert "make run" in first_section and "make test" in first_section
