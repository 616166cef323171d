"""Tunnel data, version 2: a message as a sequence of records, each sealed once per hop, so that
a relay opens and passes on each record as it arrives instead of holding the whole message.

Per hop, a message (one direction) is::

    record_0 || record_1 || ... || record_n-1
    record_j = header (4) || [nonce (12), record 0 only] || ChaCha20-Poly1305(key, nonce_j,
                                                                     inner_j, aad_j)
    header   = flags (1) || length (3, big-endian: the bytes after the header)
    nonce_j  = nonce[0:8] || (nonce[8:12] XOR j)     (j as a 32-bit big-endian integer)
    aad_j    = "hypermesh-tunnel-v2 forward" (or "backward") || circuit || header

``flags`` is ``LAST`` (0x01) on the last record and 0 on the others; nothing else is accepted.
``inner_j`` is record j of the next hop's message (its header included); at the end of the
path, ``inner_j`` is the j-th piece (at most ``RECORD_DATA`` bytes) of the padded request or
answer (``onion.pad``). The per-message nonce and the record index in it make a record open
only at its place in its message: records dropped, reordered, or taken from another message,
fail the AEAD, and a message cut short lacks its ``LAST`` record. A record longer than
``MAX_RECORD`` is refused before it is buffered, so a hop holds at most one record of a
message besides what flow control lets in.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hypermesh.tunnel.onion import MAX_HOPS, NONCE_SIZE, BadTunnel

RECORD_VERSION = 2
FORWARD = b"hypermesh-tunnel-v2 forward"
BACKWARD = b"hypermesh-tunnel-v2 backward"
RECORD_DATA = 16 * 1024
"""Bytes of the padded message in one record at the end of the path."""
TAG_SIZE = 16
HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
LAST = 0x01
RECORD_OVERHEAD = HEADER_SIZE + TAG_SIZE
"""Bytes each hop adds to a record (and ``NONCE_SIZE`` more to the first)."""
MAX_RECORD = RECORD_DATA + MAX_HOPS * (RECORD_OVERHEAD + NONCE_SIZE)
"""The longest record body (after its header) a hop accepts."""
_MAX_INDEX = 2**32


def _nonce(base: bytes, index: int) -> bytes:
    if index >= _MAX_INDEX:
        raise BadTunnel(f"a message has at most {_MAX_INDEX} records")
    return base[:8] + (int.from_bytes(base[8:], "big") ^ index).to_bytes(4, "big")


class Sealer:
    """One hop's layer over the records of one message in one direction."""

    __slots__ = ("_aad", "_aead", "_base", "_index")

    def __init__(self, key: bytes, circuit: bytes, *, forward: bool) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._aad = (FORWARD if forward else BACKWARD) + circuit
        self._base = os.urandom(NONCE_SIZE)
        self._index = 0

    def seal(self, inner: bytes, *, last: bool) -> bytes:
        """The next record, around ``inner``."""
        first = self._index == 0
        size = len(inner) + TAG_SIZE + (NONCE_SIZE if first else 0)
        header = HEADER.pack((LAST if last else 0) << 24 | size)
        sealed = self._aead.encrypt(_nonce(self._base, self._index), inner, self._aad + header)
        self._index += 1
        return header + self._base + sealed if first else header + sealed


class Framer:
    """Splits a byte stream into whole records (checking only their headers): a relay's view of
    the records it seals another layer around on their way back."""

    __slots__ = ("_buffer", "count", "ended", "max_record")

    def __init__(self, max_record: int = MAX_RECORD) -> None:
        self._buffer = bytearray()
        self.max_record = max_record
        self.count = 0
        """Records taken so far."""
        self.ended = False
        """Whether the ``LAST`` record was taken."""

    def feed(self, data: bytes) -> list[tuple[int, bool, bytes, bytes]]:
        """Each record ``data`` completes: ``(index, last, header, body)``; ``BadTunnel`` naming the
        record when one is malformed or oversized, or when bytes follow the last."""
        buffer = self._buffer
        buffer += data
        records = []
        while len(buffer) >= HEADER_SIZE or (self.ended and buffer):
            if self.ended:
                raise BadTunnel(f"{len(buffer)} bytes after the last record")
            (word,) = HEADER.unpack_from(buffer)
            flags, size = word >> 24, word & 0xFFFFFF
            if flags & ~LAST:
                raise BadTunnel(f"record {self.count}: unknown flags 0x{flags:02x}")
            if size > self.max_record:
                raise BadTunnel(
                    f"record {self.count} is {size} bytes; a record is at most {self.max_record}"
                )
            least = TAG_SIZE + (NONCE_SIZE if self.count == 0 else 0)
            if size < least:
                raise BadTunnel(f"record {self.count} is {size} bytes, shorter than its tag")
            if len(buffer) < HEADER_SIZE + size:
                break
            header = bytes(buffer[:HEADER_SIZE])
            body = bytes(buffer[HEADER_SIZE : HEADER_SIZE + size])
            del buffer[: HEADER_SIZE + size]
            self.ended = bool(flags & LAST)
            records.append((self.count, self.ended, header, body))
            self.count += 1
        return records

    @property
    def buffered(self) -> int:
        """Bytes held of a record not yet complete."""
        return len(self._buffer)

    def finish(self) -> None:
        """The stream ended: ``BadTunnel`` unless it ended with the last record."""
        if self._buffer:
            raise BadTunnel(f"the message ended inside record {self.count}")
        if not self.ended:
            raise BadTunnel(f"the message ended after {self.count} records, without its last")


class Opener:
    """One hop's layer off the records of one message in one direction."""

    __slots__ = ("_aad", "_aead", "_base", "framer")

    def __init__(
        self, key: bytes, circuit: bytes, *, forward: bool, max_record: int = MAX_RECORD
    ) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._aad = (FORWARD if forward else BACKWARD) + circuit
        self._base = b""
        self.framer = Framer(max_record)

    def feed(self, data: bytes) -> list[bytes]:
        """The inner bytes of each record ``data`` completes; ``BadTunnel`` naming the record
        that is malformed, oversized or does not open."""
        inners = []
        for index, _, header, body in self.framer.feed(data):
            if index == 0:
                self._base, body = body[:NONCE_SIZE], body[NONCE_SIZE:]
            try:
                inner = self._aead.decrypt(_nonce(self._base, index), body, self._aad + header)
            except InvalidTag:
                raise BadTunnel(f"record {index} does not open with this circuit's key") from None
            inners.append(inner)
        return inners

    def finish(self) -> None:
        self.framer.finish()


def pieces(padded: bytes) -> Iterator[tuple[bool, bytes]]:
    """``padded`` in ``RECORD_DATA`` pieces: ``(last, piece)``."""
    size = len(padded)
    for start in range(0, max(size, 1), RECORD_DATA):
        yield start + RECORD_DATA >= size, padded[start : start + RECORD_DATA]


def seal_records(sealers: Sequence[Sealer], padded: bytes) -> Iterator[bytes]:
    """The client's message: each piece of ``padded`` sealed for the last hop, then each hop
    before it (``sealers`` in path order, the first hop's first)."""
    for last, piece in pieces(padded):
        record = piece
        for sealer in reversed(sealers):
            record = sealer.seal(record, last=last)
        yield record


def open_records(openers: Sequence[Opener], data: bytes) -> list[bytes]:
    """The pieces of the destination's answer that ``data`` completes, every hop's layer off
    (``openers`` in path order)."""
    records = [data]
    for opener in openers:
        records = [inner for record in records for inner in opener.feed(record)]
    return records
