"""Strict JSON (``hypermesh.inputs.loads``): what every API decodes bytes from outside with."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypermesh.inputs import BadInput, loads


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"a": "x\\uDFFFy"}', "lone surrogate"),
        (b'["\\udc00\\ud800"]', "lone surrogate"),  # a low before a high is no pair
        (b'{"\\ud83d": 1}', "lone surrogate"),  # keys too
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": Infinity}', "not JSON"),
        (b"[-Infinity]", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a": "\xff"}', "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_what_strict_json_refuses(body: bytes, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        loads(body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"to": "x", "text": "\\ud800"}', "text"),
        (b'{"links": [{"seq": 1}, {"hash": "\\udfff"}]}', "links[1].hash"),
        (b'["ok", "\\ud800"]', "[1]"),
        (b'{"a": {"\\ud83d": 1}}', "a.\\ud83d"),
        (b'"\\ud800"', "the body"),
    ],
)
def test_a_lone_surrogate_is_named_by_its_field(body: bytes, field: str) -> None:
    with pytest.raises(BadInput) as refused:
        loads(body)
    assert str(refused.value).startswith(f"{field}: holds a lone surrogate")


def test_a_surrogate_pair_and_an_escaped_backslash_are_fine() -> None:
    assert loads(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert loads(b'{"a": "\\\\ud800"}') == {"a": "\\ud800"}  # a backslash, then text


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_whatever_json_a_valid_string_encodes_decodes_the_same(value: object) -> None:
    # st.text() never yields lone surrogates, so every such value is valid UTF-8 JSON.
    assert loads(json.dumps(value).encode()) == value
    assert loads(json.dumps(value, ensure_ascii=False).encode()) == value
