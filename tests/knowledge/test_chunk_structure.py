"""Chunks keep the document's structure: a list item stays whole with its text, a label stays with what it
introduces, small blocks of one section are packed together, and no chunk is a scrap unless it is all its
section has. Checked on the real demo corpus with the real token counter, and on lists in md/html/docx/pdf."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.knowledge.embed.local import LocalEmbedder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def count_tokens():
    return LocalEmbedder().count_tokens  # only the tokenizer is loaded, not the model


def test_local_token_count_is_not_padded(count_tokens):
    # tokenizer.json pads to 128: a padded count made every passage weigh >= 128 of a 200-token chunk.
    assert count_tokens("1.") == 2
    assert count_tokens("No meeting yet.") == 4
    assert count_tokens("word " * 300) == 300  # and nothing is truncated
