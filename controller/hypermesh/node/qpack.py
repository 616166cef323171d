"""How large a QPACK field section can decode to, read from its encoded bytes without decoding.

A QPACK field line can be one byte that names a dynamic-table entry of kilobytes, so a 20 KB
HEADERS frame can decode to tens of megabytes of headers (a "QPACK bomb"); the decoder
(pylsqpack) builds the whole list in one call and cannot be stopped half way. So the node walks
the encoded lines first (RFC 9204 §4.5) and adds up the most each can decode to, in the size
RFC 9114 §4.2.2 counts (name + value + 32 a field):

- a reference to a static-table entry: that entry's size;
- a reference to a dynamic-table entry (relative or post-base): the table's capacity, which no
  entry exceeds (RFC 9204 §3.2.1);
- a literal: its name (the referenced entry's name, or the literal's) plus its value plus 32,
  a Huffman-coded string counted at 8/5 of its encoded length (the shortest Huffman code is
  5 bits, RFC 7541 Appendix B).

So the bound never undercounts; it overcounts references into the dynamic table and Huffman
strings of rare characters. Pure: bytes in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pylsqpack

ENTRY_OVERHEAD = 32
"""What RFC 9114 §4.2.2 (and RFC 9204 §3.2.1) add to each field's name and value."""
MAX_STRING = 65535
"""The longest name or value pylsqpack can decode (lsxpack's string length is 16 bits); a
longer one makes it fail the whole connection."""
PATH_INDEX = 1
"""The static table's ``:path`` entry (RFC 9204 Appendix A), whose name request encoders
reference for the request target."""


class MalformedSection(ValueError):
    """The bytes are not a QPACK field section (truncated, or naming no static entry)."""


@dataclass(frozen=True, slots=True)
class SectionBound:
    """The most a field section can decode to."""

    size: int
    """Its size as RFC 9114 §4.2.2 counts it, at most."""
    path: int
    """The size of its ``:path`` field (the request target), at most, when that is a literal
    naming ``:path`` (as request encoders write it); 0 otherwise."""
    longest: int
    """Its longest name or value, at most, but for the value of that ``:path`` field."""


def _static_table() -> tuple[tuple[int, int], ...]:
    """(name length, value length) of each static-table entry, read from pylsqpack itself by
    decoding a one-line section that references the entry."""
    entries = []
    for index in range(128):
        decoder = pylsqpack.Decoder(0, 0)
        line = bytes([0xC0 | index]) if index < 63 else bytes([0xFF, index - 63])
        try:
            _, headers = decoder.feed_header(0, b"\x00\x00" + line)
        except pylsqpack.DecompressionFailed:
            break
        ((name, value),) = headers
        entries.append((len(name), len(value)))
    return tuple(entries)


STATIC = _static_table()
"""(name length, value length) by static index (RFC 9204 Appendix A: 99 entries)."""


def bound_section(data: bytes, table_capacity: int, limit: int | None = None) -> SectionBound:
    """The most the field section ``data`` (a HEADERS frame's payload) decodes to, when the
    dynamic table holds at most ``table_capacity`` bytes. ``MalformedSection`` when ``data``
    is not a field section.

    With ``limit``, the walk stops as soon as the fields other than the request target are
    over it (the section is refused whatever follows): as every field counts at least 32
    bytes, that is after ``limit / 32`` lines at most, however many the section holds."""
    reader = _Reader(data)
    reader.integer(8)  # Required Insert Count
    reader.integer(7)  # sign bit and Delta Base
    size = path = longest = 0
    dynamic_name = max(table_capacity - ENTRY_OVERHEAD, 0)
    while not reader.done():
        first = reader.peek()
        is_path = False
        if first & 0x80:  # 1Txxxxxx: indexed field line
            index = reader.integer(6)
            name, value = _static(index) if first & 0x40 else (dynamic_name, 0)
        elif first & 0x40:  # 01NTxxxx: literal field line with name reference
            index = reader.integer(4)
            name = _static(index)[0] if first & 0x10 else dynamic_name
            is_path = bool(first & 0x10) and index == PATH_INDEX
            value = reader.string(7)
        elif first & 0x20:  # 001NHxxx: literal field line with literal name
            name = reader.string(3)
            is_path = not first & 0x08 and reader.last_string() == b":path"
            value = reader.string(7)
        elif first & 0x10:  # 0001xxxx: indexed field line with post-base index
            reader.integer(4)
            name, value = dynamic_name, 0
        else:  # 0000Nxxx: literal field line with post-base name reference
            reader.integer(3)
            name, value = dynamic_name, reader.string(7)
        line = name + value + ENTRY_OVERHEAD
        size += line
        if is_path and not path:
            path = line
            longest = max(longest, name)
        else:
            longest = max(longest, name, value)
        if limit is not None and size - path > limit:
            break
    return SectionBound(size=size, path=path, longest=longest)


def section_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The size of decoded ``headers`` as RFC 9114 §4.2.2 counts it."""
    return sum(len(name) + len(value) + ENTRY_OVERHEAD for name, value in headers)


def _static(index: int) -> tuple[int, int]:
    if index >= len(STATIC):
        raise MalformedSection(f"no static table entry {index}")
    return STATIC[index]


class _Reader:
    """Prefix integers (RFC 7541 §5.1) and string lengths from a field section."""

    __slots__ = ("_at", "_data", "_last")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0
        self._last = 0

    def done(self) -> bool:
        return self._at >= len(self._data)

    def peek(self) -> int:
        return self._data[self._at]

    def integer(self, bits: int) -> int:
        """An integer with a ``bits``-bit prefix, starting at the current byte."""
        data, at = self._data, self._at
        if at >= len(data):
            raise MalformedSection("truncated field section")
        mask = (1 << bits) - 1
        value = data[at] & mask
        at += 1
        if value == mask:
            shift = 0
            while True:
                if at >= len(data) or shift > 62:
                    raise MalformedSection("truncated or oversized integer")
                byte = data[at]
                at += 1
                value += (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
        self._at = at
        return value

    def string(self, bits: int) -> int:
        """Skip a string whose length has a ``bits``-bit prefix (its Huffman flag the bit
        above); the most it decodes to."""
        if self.done():
            raise MalformedSection("truncated field section")
        huffman = self.peek() & (1 << bits)
        length = self.integer(bits)
        if self._at + length > len(self._data):
            raise MalformedSection("truncated string")
        self._last = self._at
        self._at += length
        return length * 8 // 5 if huffman else length

    def last_string(self) -> bytes:
        """The encoded bytes of the string ``string`` skipped last."""
        return self._data[self._last : self._at]
