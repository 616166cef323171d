"""DNS over TLS (RFC 7858), on DNS over TCP's framing (RFC 1035 §4.2.2, RFC 7766).

``DotStream`` is the framing without I/O: bytes in, whole queries out; ``frame`` is its other
half. ``serve_dot`` serves one TLS connection with it (the node's TLS listener hands it the
connections that negotiated ALPN ``dot``, or none):

- every message is framed by a 2-byte length, so at most 65,535 bytes; queries may be
  pipelined, and each is answered as soon as its answer is ready: an answer the engine has at
  once goes out in order, one that must be fetched (a mirror forwarding it) when it comes, so
  answers may come out of order (RFC 7766 §6.2.1.1), matched by their message ID;
- the answer is the engine's, byte for byte: EDNS padding (RFC 8467) when the query was
  padded, FORMERR for a malformed query;
- a message the engine will not answer at all (fewer than 12 bytes, or a response) closes the
  connection, as a DoQ stream is reset for it;
- at most ``max_pending`` queries wait for their answers at once: past that no more is read
  until one is answered (TCP's own flow control holds the client back);
- the connection is closed after ``idle_timeout`` seconds without a byte from the client
  and no query waiting for its answer (RFC 7766 §6.2.3); a query still arriving counts as
  idle, so a client that trickles bytes is closed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable

from hypermesh.dns.doq import DnsHandler

log = logging.getLogger(__name__)

DOT_ALPN = "dot"
"""The ALPN token of DNS over TLS (RFC 7858 registers it; many clients send none)."""
IDLE_TIMEOUT = 30.0
"""Seconds without a byte from the client, and no answer owed, before the connection closes."""
MAX_PENDING = 64
"""Queries of one connection waiting for their answers at once."""
READ_SIZE = 65536


class DotStream:
    """The framing of one connection's queries: ``feed`` bytes, get the whole messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of a message still arriving (at most 2 + 65,535)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes, in order, without their length prefixes."""
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        start = 0
        while len(buffer) - start >= 2:
            length = int.from_bytes(buffer[start : start + 2], "big")
            if len(buffer) - start - 2 < length:
                break
            messages.append(bytes(buffer[start + 2 : start + 2 + length]))
            start += 2 + length
        del buffer[:start]
        return messages


def frame(message: bytes) -> bytes:
    """``message`` with its 2-byte length prefix; ``ValueError`` past 65,535 bytes."""
    if len(message) > 0xFFFF:
        raise ValueError(f"a DNS message over TCP has at most 65535 bytes, not {len(message)}")
    return len(message).to_bytes(2, "big") + message


async def serve_dot(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: DnsHandler,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    max_pending: int = MAX_PENDING,
) -> None:
    """Answer the queries of one connection until the client closes it, sends a message that
    gets no answer, or stays idle; the caller closes the writer."""
    stream = DotStream()
    pending: set[asyncio.Task[bool]] = set()
    try:
        while not writer.is_closing():
            if len(pending) >= max_pending:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), idle_timeout)
            except TimeoutError:
                if not pending:
                    return
                await asyncio.wait(pending, timeout=idle_timeout)
                continue
            if not data:
                break
            for query in stream.feed(data):
                if not _answer_one(query, answer, writer, pending):
                    return
            await writer.drain()
        if pending:
            await asyncio.wait(pending, timeout=idle_timeout)
    finally:
        for task in pending:
            task.cancel()


def _answer_one(
    query: bytes,
    answer: DnsHandler,
    writer: asyncio.StreamWriter,
    pending: set[asyncio.Task[bool]],
) -> bool:
    """Answer ``query`` now, or once its answer comes; False when the connection must close."""
    try:
        answered = answer(query)
    except Exception:  # the engine never raises; if it does, this connection ends
        log.exception("DoT query not answered")
        return False
    if inspect.isawaitable(answered):
        task = asyncio.ensure_future(_later(answered, writer))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return True
    return _write(writer, answered)


async def _later(answered: Awaitable[bytes | None], writer: asyncio.StreamWriter) -> bool:
    try:
        message = await answered
    except Exception:
        log.exception("DoT query not answered")
        message = None
    if not _write(writer, message):
        writer.close()
        return False
    return True


def _write(writer: asyncio.StreamWriter, message: bytes | None) -> bool:
    if message is None or len(message) > 0xFFFF:
        return False
    if not writer.is_closing():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(frame(message))
    return True
