"""portal/json_body.py's parser on its own: nesting is measured outside strings, without
recursion, and every refusal is a JsonBodyError (never RecursionError)."""

from __future__ import annotations

import pytest

from portal.json_body import JsonBodyError, loads_bounded, nesting


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"a": "[[[[{{{{", "b": ["\\"]]]", {"c": "\\\\"}]}'
    assert nesting(text, 32) == 3
    assert loads_bounded(text.encode(), max_depth=3)["a"] == "[[[[{{{{"
    with pytest.raises(JsonBodyError, match="deeper than 2"):
        loads_bounded(text.encode(), max_depth=2)


@pytest.mark.parametrize("data", [
    b"[" * 1_000_000,                        # never closed
    b"[" * 50_000 + b"]" * 50_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'["' + b"[" * 100_000 + b'"' + b"]" * 40,  # deep after a long string
    b"\xff\xfe{}", b"NaN", b'{"a": Infinity}', b'{"a": 1', b"",
])
def test_refusals_are_typed(data: bytes) -> None:
    with pytest.raises(JsonBodyError):
        loads_bounded(data)
