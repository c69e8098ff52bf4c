"""Document metadata is what every reader can hold: strings, booleans and finite numbers within 2**53."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("metadata", ['{"score": NaN}', '{"big": 1e400}', '{"x": Infinity}', '{"n": 9007199254740993}',
                                      '{"nested": {"a": 1}}'])
def test_metadata_no_reader_can_hold_is_refused_and_nothing_is_stored(api_client, login_as, metadata):
    """A review stored `{"score": NaN, "big": 1e400}` with a 500; the tenant's document list was a 500 from then on."""
    carol = login_as("carol")
    r = api_client.post("/api/t/sales/documents", cookies=carol, data={"metadata": metadata},
                        files={"file": ("note.md", b"# Note\\n\\nSome text.", "text/markdown")})
    assert r.status_code == 422 and r.json()["error"] == "invalid_metadata", r.text
    listed = api_client.get("/api/t/sales/documents", cookies=carol)
    assert listed.status_code == 200 and listed.json()["documents"] == []
