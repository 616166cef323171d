"""The client's side of a node's NDJSON feeds (the registry's zone feed, a chain's head feed, a
node's message feed): a feed watched over a kept-open HTTP/3 request, and its lines read as
they arrive, bounded in length and in silence."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from hypermesh.errors import TransportError
from hypermesh.transport.client import H3ClientProtocol, connect_h3, status_error
from hypermesh.transport.identity import Identity

MAX_LINE = 1 << 20
"""Bytes of one feed line at the most (a line longer than that ends the watch)."""


class NoFeed(TransportError):
    """The node serves no such feed (404: a node of an earlier version)."""


async def feed_lines(
    pieces: AsyncIterator[bytes], silence: float, *, heartbeats: bool = False
) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of an NDJSON feed; the heartbeats (``{}``) too with ``heartbeats``.
    ``TransportError`` when nothing (not even a heartbeat) arrives for ``silence`` seconds, or
    a line is longer than ``MAX_LINE``. Lines that are not JSON objects are skipped."""
    buffer = b""
    iterator = pieces.__aiter__()
    while True:
        try:
            async with asyncio.timeout(silence):
                piece = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise TransportError(f"the feed was silent for {silence:g}s") from None
        buffer += piece
        *complete, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_LINE:
            raise TransportError(f"a line of the feed is longer than {MAX_LINE} bytes")
        for line in complete:
            with contextlib.suppress(ValueError):
                data = json.loads(line) if line.strip() else None
                if isinstance(data, dict) and (data or heartbeats):
                    yield data


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
        yield h3, feed_lines(pieces, silence)
