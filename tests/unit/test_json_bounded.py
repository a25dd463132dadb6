"""qsign/json_bounded.py, the parser the agent and the portal share (SECURITY.md #46):
each refusal says which rule the text broke, since the agent's JSON-RPC framing answers
a too-deep message differently from one that is not JSON."""

from __future__ import annotations

import pytest

from ground.json_bounded import JsonRefused, Why, parse_bounded


@pytest.mark.parametrize(("data", "why"), [
    ("[" * 50_000 + "]" * 50_000, Why.TOO_DEEP),
    (b'{"a":' * 17 + b"1" + b"}" * 17, Why.TOO_DEEP),
    (b"\xff\xfe{}", Why.NOT_UTF8),
    ("NaN", Why.NOT_JSON),
    ('{"a": -Infinity}', Why.NOT_JSON),
    ('{"a": 1', Why.NOT_JSON),
    ("", Why.NOT_JSON),
])
def test_each_refusal_names_its_rule(data: str | bytes, why: Why) -> None:
    with pytest.raises(JsonRefused) as refused:
        parse_bounded(data, max_depth=16)
    assert refused.value.why is why
    assert str(refused.value) == refused.value.reason


def test_text_and_bytes_within_the_bound_parse() -> None:
    text = '{"a": [[1, "]]]]"]], "b": "\\u00e9"}'
    assert parse_bounded(text, max_depth=3) == {"a": [[1, "]]]]"]], "b": "é"}
    assert parse_bounded(text.encode(), max_depth=3) == parse_bounded(text, max_depth=3)
    with pytest.raises(JsonRefused, match="deeper than 2"):
        parse_bounded(text, max_depth=2)
