"""Kept-open HTTP/3 connections, one per (address, pinned node ID), for callers that talk to
the same peers again and again (a relay to its next hops, a tunnel client to its first hop).

A connection that closed or failed is dropped and the request is tried once more on a new
one; the caller bounds the whole with ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from aioquic.quic.connection import QuicConnection

from hypermesh.errors import TransportError
from hypermesh.transport.client import H3ClientProtocol, Headers, connect_pinned
from hypermesh.transport.identity import Identity

Key = tuple[str, str | None]
P = TypeVar("P", bound=H3ClientProtocol)


class KeptConnections(Generic[P]):
    """Kept-open connections of ``protocol`` by (address, expected node ID), each proving
    ``identity`` (``None``: an anonymous client); at most ``max_connections``, the oldest
    closed first. A connection found closed is opened again on its next use."""

    def __init__(
        self,
        identity: Identity | None,
        protocol: Callable[[QuicConnection], P],
        max_connections: int = 256,
    ) -> None:
        self._identity = identity
        self._protocol = protocol
        self._max = max_connections
        self._open: dict[Key, tuple[contextlib.AsyncExitStack, P]] = {}
        self._locks: dict[Key, asyncio.Lock] = {}

    async def connection(self, key: Key) -> P:
        """The kept connection to ``key`` (opened when there is none, or it closed)."""
        held = self._open.get(key)
        if held is not None and held[1].close_reason is None:
            return held[1]
        async with self._locks.setdefault(key, asyncio.Lock()):
            held = self._open.get(key)
            if held is not None and held[1].close_reason is None:
                return held[1]
            if held is not None:
                await self.drop(key)
            if len(self._open) >= self._max:
                await self.drop(next(iter(self._open)))
            stack = contextlib.AsyncExitStack()
            h3 = await stack.enter_async_context(
                connect_pinned(
                    key[0], expected_id=key[1], protocol=self._protocol, identity=self._identity
                )
            )
            self._open[key] = (stack, h3)
            return h3

    async def drop(self, key: Key) -> None:
        held = self._open.pop(key, None)
        if held is not None:
            with contextlib.suppress(Exception):
                await held[0].aclose()

    def close_now(self) -> None:
        """Close every connection at once (CONNECTION_CLOSE is sent; no waiting)."""
        for _, h3 in self._open.values():
            with contextlib.suppress(Exception):
                h3.close()
        self._open.clear()

    async def aclose(self) -> None:
        """Close every connection."""
        for key in list(self._open):
            await self.drop(key)


class ConnectionPool(KeptConnections[H3ClientProtocol]):
    """Requests on kept connections (see the module's docstring)."""

    def __init__(self, identity: Identity | None, max_connections: int = 256) -> None:
        super().__init__(identity, H3ClientProtocol, max_connections)

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
                    h3 = await self.connection(key)
                    try:
                        return await h3.request(method, path, headers=headers, body=body)
                    except TransportError:
                        await self.drop(key)
                        if attempt == 2:
                            raise
        except TimeoutError:
            await self.drop(key)
            raise TransportError(
                f"{address}: no answer to {method} {path} within {timeout:g}s"
            ) from None
        raise AssertionError("unreachable")
