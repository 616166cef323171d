"""The ports of the drivers: what they need of the world besides the API they drive.

A driver of TLDs, Records or interface policies must find other nodes (where a node answers
on an interface, and the key it proves), sign as a node whose key this controller holds, and
tell the time. Where those answers come from differs by world: in standalone mode from the
node folders of the state directory (``drivers.standalone``), on Kubernetes from Node status
and the nodes' Secrets (``hypermesh_operator.directory``). The drivers see only these ports, so
the same driver code runs in both worlds.

The directory's methods are async: on Kubernetes a key may have to be read from the API.
"""

from __future__ import annotations

import time
from typing import Protocol

from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity


class NodeDirectory(Protocol):
    """Where the nodes of a manifest set are, and the keys this controller holds for them.

    ``namespace`` is the resource's namespace ("" for a manifest set without one).
    """

    async def locate(self, name: str, namespace: str, interface: str = "public") -> PeerRef | None:
        """Where Node ``name`` answers on ``interface`` (``public``, its QUIC endpoint;
        ``private``; ``ephemeral``) and the node ID it proves there; None
        when it does not serve (not running, no such interface, no address yet)."""
        ...

    async def node_id(self, name: str, namespace: str) -> str | None:
        """Node ``name``'s node ID, or None when it has no key yet."""
        ...

    async def signer(self, name: str, namespace: str) -> Identity | None:
        """Node ``name``'s key when this controller holds it (to sign and prove as the node),
        else None."""
        ...

    async def key_for(self, node_id: str, namespace: str) -> Identity | None:
        """The key of the Node whose ID is ``node_id``, when this controller holds it."""
        ...


class Clock(Protocol):
    """The wall clock the drivers judge terms by (a TLD's expiry)."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()


__all__ = ["Clock", "NodeDirectory", "SystemClock"]
