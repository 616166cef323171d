"""``hmctl chain log``'s PAYLOAD column: text as text (whitespace folded, cut at 40 characters
with an ellipsis), anything else as ``hex:`` and its first 20 bytes: never raw bytes, never a
control character that would move a terminal's cursor or change its colours."""

from __future__ import annotations

import pytest

from hypermesh.cli.chain import _preview


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        (b"hello world", "hello world"),
        (b"line one\nline two\ttab", "line one line two tab"),
        ("héllo wörld".encode(), "héllo wörld"),
        (b"x" * 40, "x" * 40),
        (b"x" * 41, "x" * 40 + "…"),
        (b"\x00\x01\xff\xfe", "hex:0001fffe"),
        (b"\x1b[31mred\x1b[0m", "hex:1b5b33316d7265641b5b306d"),
        (bytes(range(256)), "hex:" + bytes(range(20)).hex() + "…"),
        (b"a" * 45 + b"\xff", "a" * 40 + "…"),  # not UTF-8 only past what is shown
        (b"\xff" + b"a" * 45, "hex:ff" + "61" * 19 + "…"),
        (None, "(redacted)"),
    ],
)
def test_a_payload_is_shown_as_text_or_hex(payload: bytes | None, shown: str) -> None:
    assert _preview(payload) == shown
