"""Kept-open HTTP/3 connections, one per (address, pinned node ID), for callers that talk to
the same peers again and again (a relay to its next hops, a tunnel client to its first hop).

A connection that closed or failed is dropped and the request is tried once more on a new
one; the caller bounds the whole with ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from hypermesh.errors import TransportError
from hypermesh.transport.client import H3ClientProtocol, Headers, connect_h3
from hypermesh.transport.identity import Identity

Key = tuple[str, str | None]


class ConnectionPool:
    """Connections by (address, expected node ID), each proving ``identity`` (``None``: an
    anonymous client, as tunnels are)."""

    def __init__(self, identity: Identity | None, max_connections: int = 256) -> None:
        self._identity = identity
        self._max = max_connections
        self._open: dict[Key, tuple[contextlib.AsyncExitStack, H3ClientProtocol]] = {}
        self._locks: dict[Key, asyncio.Lock] = {}

    async def request(
        self,
        address: str,
        expected_id: str | None,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        timeout: float = 10.0,  # noqa: ASYNC109 - the message names the limit
    ) -> tuple[int, Headers, bytes]:
        """One request on the kept connection to ``address`` (opened when there is none);
        ``TransportError`` when no answer comes within ``timeout`` seconds."""
        key = (address, expected_id)
        headers = tuple(headers)
        try:
            async with asyncio.timeout(timeout):
                for attempt in (1, 2):
                    h3 = await self._connection(key)
                    try:
                        return await h3.request(method, path, headers=headers, body=body)
                    except TransportError:
                        await self._drop(key)
                        if attempt == 2:
                            raise
        except TimeoutError:
            await self._drop(key)
            raise TransportError(
                f"{address}: no answer to {method} {path} within {timeout:g}s"
            ) from None
        raise AssertionError("unreachable")

    async def _connection(self, key: Key) -> H3ClientProtocol:
        held = self._open.get(key)
        if held is not None and held[1].close_reason is None:
            return held[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            held = self._open.get(key)
            if held is not None and held[1].close_reason is None:
                return held[1]
            if held is not None:
                await self._drop(key)
            if len(self._open) >= self._max:
                await self._drop(next(iter(self._open)))
            stack = contextlib.AsyncExitStack()
            h3 = await stack.enter_async_context(
                connect_h3(key[0], expected_id=key[1], identity=self._identity)
            )
            self._open[key] = (stack, h3)
            return h3

    async def _drop(self, key: Key) -> None:
        held = self._open.pop(key, None)
        if held is not None:
            with contextlib.suppress(Exception):
                await held[0].aclose()

    async def aclose(self) -> None:
        """Close every connection."""
        for key in list(self._open):
            await self._drop(key)
