"""Dialling a node by key over several addresses: happy eyeballs (RFC 8305's idea, on QUIC).

A node record lists where a node may be reached, best first; some of those addresses may be
dead from here (a closed port, a network this host has no route to, a NAT's outside address seen
from inside). ``dial`` starts a QUIC handshake to the first address, the next one 250 ms later
(or at once when the one before it failed), and so on; the first handshake whose peer proves
the pinned key wins, and the others are cancelled. A peer that answers with another key loses
like a dead address: the key, not the address, says who a node is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.transport.client import H3ClientProtocol, connect_h3
from hypermesh.transport.identity import Identity

STAGGER = 0.25
"""Seconds between the start of one attempt and the next (RFC 8305's Connection Attempt
Delay)."""


class _Race:
    """The attempts of one dial: the winner's address and connection, each loser's error."""

    def __init__(self, node_id: str, identity: Identity | None) -> None:
        self.node_id = node_id
        self.identity = identity
        self.won: asyncio.Future[tuple[str, H3ClientProtocol]] = (
            asyncio.get_running_loop().create_future()
        )
        self.release = asyncio.Event()
        self.errors: dict[str, str] = {}

    async def attempt(self, address: str) -> None:
        """Connect to ``address``; if first, hold the connection until released."""
        try:
            async with connect_h3(address, expected_id=self.node_id, identity=self.identity) as h3:
                if self.won.done():
                    return
                self.won.set_result((address, h3))
                await self.release.wait()
        except (HyperMeshError, OSError, ValueError) as exc:
            self.errors[address] = str(exc)


@contextlib.asynccontextmanager
async def dial(
    addresses: Sequence[str],
    node_id: str,
    *,
    identity: Identity | None,
    timeout: float,  # noqa: ASYNC109 - bounds the handshakes only, not the caller's use
    stagger: float = STAGGER,
) -> AsyncIterator[tuple[str, H3ClientProtocol]]:
    """The address that answered first as ``node_id`` and its open HTTP/3 connection, kept
    open while the block runs. ``TransportError`` naming each address and why it failed when
    none answers within ``timeout`` seconds."""
    addresses = list(dict.fromkeys(addresses))
    if not addresses:
        raise HyperMeshError(f"no address known for {node_id}")
    race = _Race(node_id, identity)
    tasks: list[asyncio.Task[None]] = []
    try:
        try:
            async with asyncio.timeout(timeout):
                await _run(race, addresses, tasks, stagger)
        except TimeoutError:
            pass
        if not race.won.done():
            for address in addresses:
                race.errors.setdefault(address, f"no QUIC handshake within {timeout:g}s")
            tried = "; ".join(f"{a}: {e}" for a, e in race.errors.items())
            raise TransportError(f"{node_id} did not answer at any address ({tried})")
        yield race.won.result()
    finally:
        race.release.set()
        if not race.won.done():
            race.won.cancel()
        winner = race.won.result()[0] if race.won.done() and not race.won.cancelled() else None
        for task, address in zip(tasks, addresses, strict=False):
            if address != winner:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(
    race: _Race, addresses: list[str], tasks: list[asyncio.Task[None]], stagger: float
) -> None:
    """Start the attempts one after another (the next after ``stagger`` seconds, or when the
    one before failed) until one wins or all failed."""
    for address in addresses:
        task = asyncio.create_task(race.attempt(address))
        tasks.append(task)
        either: list[asyncio.Future[Any]] = [race.won, task]
        await asyncio.wait(either, timeout=stagger, return_when="FIRST_COMPLETED")
        if race.won.done():
            return
    while not race.won.done():
        running = [t for t in tasks if not t.done()]
        if not running:
            return
        any_of: list[asyncio.Future[Any]] = [race.won, *running]
        await asyncio.wait(any_of, return_when="FIRST_COMPLETED")
