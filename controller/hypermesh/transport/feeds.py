"""The client's side of a node's NDJSON feeds (the registry's zone feed, a chain's head feed, a
node's message feed): a feed watched over a kept-open HTTP/3 request, and its lines read as
they arrive, bounded in length and in silence."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from hypermesh.errors import TransportError
from hypermesh.transport.client import H3ClientProtocol, connect_h3, status_error
from hypermesh.transport.identity import Identity

MAX_LINE = 1 << 20
"""Bytes of one feed line at the most (a line longer than that ends the watch)."""


class NoFeed(TransportError):
    """The node serves no such feed (404: a node of an earlier version)."""


LATE = 5.0
"""Seconds past one heartbeat interval after which a feed's connection is asked for a PING."""
PROBE_TIMEOUT = 3.0
"""Seconds that PING may go unacknowledged before the feed's peer is taken for gone."""

Probe = Callable[[], Awaitable[None]]
"""A QUIC PING on the feed's connection, answered when the peer acknowledges it."""


async def feed_lines(
    pieces: AsyncIterator[bytes],
    silence: float,
    *,
    heartbeats: bool = False,
    probe: Probe | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of an NDJSON feed; the heartbeats (``{}``) too with ``heartbeats``.
    ``TransportError`` when nothing (not even a heartbeat) arrives for ``silence`` seconds, or
    a line is longer than ``MAX_LINE``. Lines that are not JSON objects are skipped.

    With ``probe``: once a heartbeat is ``LATE`` seconds late (``silence`` is three heartbeat
    intervals), the connection is asked for a PING, and one unacknowledged for
    ``PROBE_TIMEOUT`` seconds ends the feed at once: a peer that restarted (it knows the
    connection no more, and says nothing) is noticed in about half a minute, not at QUIC's
    idle timeout. A live connection costs nothing more while its heartbeats come in time."""
    buffer = b""
    iterator = pieces.__aiter__()
    late = silence / 3 + LATE if probe is not None else None
    while True:
        try:
            piece = await _next_piece(iterator, silence, late, probe)
        except StopAsyncIteration:
            return
        buffer += piece
        *complete, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_LINE:
            raise TransportError(f"a line of the feed is longer than {MAX_LINE} bytes")
        for line in complete:
            with contextlib.suppress(ValueError):
                data = json.loads(line) if line.strip() else None
                if isinstance(data, dict) and (data or heartbeats):
                    yield data


async def _next_piece(
    iterator: AsyncIterator[bytes], silence: float, late: float | None, probe: Probe | None
) -> bytes:
    """The next piece of the feed within ``silence`` (asking ``probe`` after ``late``)."""
    if probe is None or late is None or late >= silence:
        try:
            async with asyncio.timeout(silence):
                return await anext(iterator)
        except TimeoutError:
            raise TransportError(f"the feed was silent for {silence:g}s") from None
    waiting = asyncio.ensure_future(anext(iterator))
    try:
        done, _ = await asyncio.wait({waiting}, timeout=late)
        if not done:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await probe()
            except (TimeoutError, ConnectionError):
                raise TransportError(
                    f"the feed was silent for {late:g}s and a PING went unanswered "
                    f"for {PROBE_TIMEOUT:g}s"
                ) from None
            done, _ = await asyncio.wait({waiting}, timeout=silence - late - PROBE_TIMEOUT)
            if not done:
                raise TransportError(f"the feed was silent for {silence:g}s")
        return waiting.result()
    finally:
        if not waiting.done():
            waiting.cancel()


@contextlib.asynccontextmanager
async def watched(
    address: str,
    expected_id: str | None,
    path: str,
    *,
    identity: Identity | None,
    silence: float,
    headers: Iterable[tuple[str, str]] = (),
    timeout: float,  # noqa: ASYNC109 - until the feed is answered
) -> AsyncIterator[tuple[H3ClientProtocol, AsyncIterator[dict[str, Any]]]]:
    """A watch of the feed at ``path`` on the node at ``address`` (its key pinned, proving
    ``identity``): the connection (for other requests while it lasts) and the feed's objects.
    ``timeout`` bounds the wait for the answer, ``silence`` the feed's quiet afterwards.
    ``NoFeed`` on 404, ``TransportError`` (``AccessDenied``: refused) on any other status."""
    async with (
        asyncio.timeout(timeout) as deadline,
        connect_h3(address, expected_id=expected_id, identity=identity) as h3,
        h3.subscribe("GET", path, headers=list(headers)) as (status, _, pieces),
    ):
        if status != 200:
            body = b""
            with contextlib.suppress(TransportError):
                async for piece in pieces:
                    body += piece
            error = status_error(address, f"GET {path}", status, body[:4096])
            raise NoFeed(str(error)) if status == 404 else error
        deadline.reschedule(None)  # answered: the feed's silence is watched from now
        yield h3, feed_lines(pieces, silence, probe=h3.ping)
