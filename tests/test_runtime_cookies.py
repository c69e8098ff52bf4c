"""Cookie values are unquoted in one pass (CVE-2024-7592: http.cookies._unquote before CPython 3.11.10 was
quadratic in a quoted value's backslashes; one unauthenticated request stalled the event loop for seconds)."""

from __future__ import annotations

import http.cookies

import pytest

from backend.runtime import _linear_unquote, harden_cookie_parsing

CASES = ['"plain"', "unquoted", '"a\\"b"', '"\\012x"', '"\\\\"', '"x\\"', '""', '"', "", '"\\377\\101"',
         '"ab\\c"', '"\\0"', '"\\08"']


def _standard_unquote():
    """A fresh copy of the standard library's http.cookies (the imported one may be patched already)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_stdlib_cookies", http.cookies.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._unquote


@pytest.mark.parametrize("value", CASES)
def test_the_one_pass_unquote_gives_the_standard_librarys_results(value):
    assert _linear_unquote(value) == _standard_unquote()(value)


def test_it_is_what_every_cookie_parser_of_the_app_uses():
    from starlette.requests import cookie_parser

    harden_cookie_parsing()
    assert http.cookies._unquote is _linear_unquote
    # Starlette's parser (request.cookies, the surface guard, the browser checks) goes through it.
    calls = []
    http.cookies._unquote = lambda v: calls.append(v) or _linear_unquote(v)  # type: ignore[attr-defined]
    try:
        assert cookie_parser('a="x\\\\y"; access_token=t') == {"a": "x\\y", "access_token": "t"}
    finally:
        http.cookies._unquote = _linear_unquote  # type: ignore[attr-defined]
    assert calls


def test_a_backslash_flood_is_unquoted_in_steps_proportional_to_its_length():
    """Counts the regex's steps instead of timing them: one substitution per escape, however many there are."""
    steps = []
    value = '"' + "\\\\" * 20_000 + '"'

    def count(m):
        steps.append(1)
        return m[2]

    import backend.runtime as runtime

    original = runtime._unquote_one
    runtime._unquote_one = count
    try:
        assert runtime._linear_unquote(value) == "\\" * 20_000
    finally:
        runtime._unquote_one = original
    assert len(steps) == 20_000
