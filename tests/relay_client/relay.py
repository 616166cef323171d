"""Helpers of the relay client tests: a real relay (``RelayHub`` and its TLS listener) on
127.0.0.1 inside the test's event loop, links that collect what they receive, bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from hypermesh.node.relay_hub import RelayHub, RelayLimits
from hypermesh.node.relay_tcp import open_tcp_listener
from hypermesh.transport.endpoint import MeshEndpoint
from hypermesh.transport.identity import Identity
from hypermesh.transport.relayclient import RelayLink


@dataclass
class Relay:
    """A relay running in the test: its key, hub and TLS listener."""

    identity: Identity
    hub: RelayHub
    server: asyncio.Server

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Stop listening and end every attachment (as a relay that restarts does)."""
        self.server.close()
        self.hub.close()
        await asyncio.wait_for(self.server.wait_closed(), 10)


@asynccontextmanager
async def running_relay(
    identity: Identity | None = None,
    *,
    admits: Callable[[str], bool] | None = None,
    limits: RelayLimits | None = None,
    port: int = 0,
) -> AsyncIterator[Relay]:
    """A relay with a TCP listener on 127.0.0.1 (any free port, or ``port``), stopped after."""
    identity = identity or Identity.generate()
    hub = RelayHub(identity, admits, limits, network="test")
    server = await open_tcp_listener(hub, "127.0.0.1", port, identity)
    relay = Relay(identity, hub, server)
    try:
        yield relay
    finally:
        await relay.stop()


@dataclass
class Inbox:
    """What a link received: packets, GONE and LIMIT notices, in order."""

    packets: list[tuple[str, bytes]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    limits: list[tuple[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def packet(self, peer: str, data: bytes) -> None:
        self.packets.append((peer, data))
        self.arrived.set()

    def went(self, peer: str) -> None:
        self.gone.append(peer)
        self.arrived.set()

    def limited(self, peer: str, why: str) -> None:
        self.limits.append((peer, why))
        self.arrived.set()


def make_link(
    relay: Relay,
    identity: Identity | None = None,
    *,
    endpoint: MeshEndpoint | None = None,
    addresses: Iterable[str] | None = None,
    transports: Iterable[str] = ("udp", "tcp"),
) -> tuple[RelayLink, Inbox]:
    """A link from a fresh (or the given) node identity to ``relay``, collecting into an inbox."""
    inbox = Inbox()
    link = RelayLink(
        relay.identity.node_id,
        list(addresses) if addresses is not None else [relay.address],
        identity or Identity.generate(),
        endpoint,
        inbox.packet,
        on_gone=inbox.went,
        on_limit=inbox.limited,
        transports=transports,
    )
    return link, inbox


async def until(predicate: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Wait until ``predicate()`` holds, polling every 20 ms, at most ``within`` seconds."""
    for _ in range(int(within / 0.02) + 1):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within:g} s: {what or predicate}")
