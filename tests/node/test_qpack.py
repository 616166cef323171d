"""The bound on what a QPACK field section decodes to, checked against pylsqpack's decoder:
never below what it really decodes to, for sections pylsqpack's encoder writes (with and
without a dynamic table) and for any bytes pylsqpack accepts; and a bomb is bounded as one."""

from __future__ import annotations

import contextlib

import pylsqpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.node.qpack import (
    ENTRY_OVERHEAD,
    PATH_INDEX,
    STATIC,
    MalformedSection,
    bound_section,
    section_size,
)

from .h3raw import bomb_section, insert_literal, plain_section, set_capacity

NAMES = st.sampled_from(
    [b":method", b":path", b":authority", b"user-agent", b"content-type", b"cookie", b"x-a"]
) | st.binary(min_size=1, max_size=40).map(lambda name: name.lower())
VALUES = st.binary(max_size=300) | st.text("abcXYZ019-_/?=", max_size=3000).map(str.encode)
HEADER_LISTS = st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=25)


def test_the_static_table_is_rfc_9204s() -> None:
    assert len(STATIC) == 99
    assert STATIC[PATH_INDEX] == (len(b":path"), len(b"/"))
    assert max(name + value for name, value in STATIC) + ENTRY_OVERHEAD == 108


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.sampled_from([0, 256, 1024, 4096]),
    requests=st.lists(HEADER_LISTS, min_size=1, max_size=5),
)
def test_the_bound_holds_for_what_pylsqpack_encodes(
    capacity: int, requests: list[list[tuple[bytes, bytes]]]
) -> None:
    encoder, decoder = pylsqpack.Encoder(), pylsqpack.Decoder(capacity, 16)
    decoder.feed_encoder(encoder.apply_settings(capacity, 16))
    for i, headers in enumerate(requests):
        instructions, section = encoder.encode(4 * i, headers)
        decoder.feed_encoder(instructions)
        control, decoded = decoder.feed_header(4 * i, section)
        encoder.feed_decoder(control)
        assert decoded == headers
        bound = bound_section(section, capacity)
        assert bound.size >= section_size(decoded)
        assert bound.longest >= max(len(name) for name, _ in decoded)
        paths = [section_size([field]) for field in decoded if field[0] == b":path"]
        if bound.path:
            # The :path line it counted is one of the decoded ones (with two :path fields, a
            # malformed request, the first may come from the dynamic table, the second literal).
            assert paths and bound.path >= min(paths)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40).map(lambda tail: b"\x00\x00" + tail) | st.binary(max_size=20))
def test_any_section_pylsqpack_decodes_is_bounded(data: bytes) -> None:
    try:
        _, decoded = pylsqpack.Decoder(0, 0).feed_header(0, data)
    except (pylsqpack.DecompressionFailed, pylsqpack.StreamBlocked):
        with contextlib.suppress(MalformedSection):  # refused, if at all, as malformed
            bound_section(data, 0)
        return
    assert bound_section(data, 0).size >= section_size(decoded)


@pytest.mark.parametrize("references", [1, 100, 20_000])
@pytest.mark.parametrize("capacity", [256, 1024, 4096])
def test_a_bomb_is_bounded_at_the_table_capacity_per_reference(
    references: int, capacity: int
) -> None:
    entry = (b"x-bomb", b"a" * (capacity - ENTRY_OVERHEAD - len(b"x-bomb")))
    section = bomb_section(references, capacity)
    bound = bound_section(section, capacity)
    assert bound.size >= references * capacity
    if references <= 100:  # the bomb is real: pylsqpack decodes it to that many entries
        decoder = pylsqpack.Decoder(capacity, 16)
        decoder.feed_encoder(set_capacity(capacity) + insert_literal(*entry))
        _, decoded = decoder.feed_header(0, section)
        assert decoded.count(entry) == references
        assert bound.size >= section_size(decoded) >= references * capacity


def _refused(data: bytes, capacity: int, limit: int | None) -> tuple[bool, bool]:
    """(over the limit, the target alone to blame) as the endpoint decides it."""
    bound = bound_section(data, capacity, limit)
    return bound.size > 8192, bound.size - bound.path <= 8192


@settings(max_examples=100, deadline=None)
@given(
    headers=HEADER_LISTS,
    references=st.integers(0, 3000),
    capacity=st.sampled_from([256, 1024, 4096]),
)
def test_stopping_at_the_limit_decides_the_same(
    headers: list[tuple[bytes, bytes]], references: int, capacity: int
) -> None:
    _, section = pylsqpack.Encoder().encode(0, headers)
    data = section + bytes([0x80]) * references  # and references to a dynamic entry
    assert _refused(data, capacity, 8192) == _refused(data, capacity, None)


def test_a_bomb_is_walked_only_as_far_as_the_limit() -> None:
    section = bomb_section(100_000, 1024)
    bound = bound_section(section, 1024, 65_536)
    assert 65_536 < bound.size <= 65_536 + 1024  # stopped at the first reference past it
    assert bound_section(section, 1024).size >= 100_000 * 1024


def test_the_request_target_is_told_apart() -> None:
    bound = bound_section(plain_section(b"/x" * 5000), 0)
    assert bound.path == len(b":path") + 10_000 + ENTRY_OVERHEAD
    assert bound.longest < 10_000  # the target's value is not counted among the others
    assert bound.size - bound.path < 200


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00\x00\xff", b"\x00\x00\xc0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"],
)
def test_malformed_sections_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedSection):
        bound_section(data, 4096)
