"""Members of federated networks, as their registries vouch for them.

A network may federate with others (``Network.spec.federation``), each named by its registry's
key. Every node of the network that gates an interface keeps, for each federated network, the
members that registry lists in its signed anchors (``hypermesh.mirror.anchors``), minus the keys
it revoked, fetched again every ``REFRESH`` seconds. A caller whose key is among them is known
as ``NETWORK/MEMBER``, ``NETWORK`` being the name this network gives the federated one.

When a federated registry cannot be reached, the last members it vouched for are kept: a
federation outage does not lock partners out, and a revocation there reaches this network at
the next refresh that succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypermesh.errors import HyperMeshError
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.follower import API
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.identity import Identity

log = logging.getLogger("hypermesh.mirror")

REFRESH = 5.0
"""Seconds between fetches of each federated registry's anchors."""
TIMEOUT = 5.0


@dataclass(slots=True)
class FederatedNetwork:
    """One federated network: what this network calls it, and where its registry answers."""

    name: str
    registry: Callable[[], PeerRef | None]
    members: dict[str, str] = field(default_factory=dict)
    """Node ID → member name, as its registry last vouched."""
    last_error: str | None = None


class Federation:
    """The members of every federated network; ``member`` names a caller, or None. The
    federated registries are asked proving ``identity`` (the node's key)."""

    def __init__(
        self,
        networks: Sequence[FederatedNetwork],
        refresh: float = REFRESH,
        *,
        identity: Identity | None,
    ) -> None:
        self.networks = list(networks)
        self._refresh = refresh
        self._identity = identity

    def member(self, node_id: str) -> str | None:
        """``NETWORK/MEMBER`` when a federated registry vouches for ``node_id``."""
        for network in self.networks:
            name = network.members.get(node_id)
            if name is not None:
                return f"{network.name}/{name}"
        return None

    def status(self) -> dict[str, object]:
        return {
            n.name: {"members": len(n.members), "lastError": n.last_error} for n in self.networks
        }

    async def run(self) -> None:
        """Refresh every federated network's members, forever."""
        while True:
            await asyncio.gather(*(self.refresh(n) for n in self.networks))
            await asyncio.sleep(self._refresh)

    async def refresh(self, network: FederatedNetwork) -> None:
        peer = network.registry()
        if peer is None or peer.node_id is None:
            network.last_error = "the federated registry is not running"
            return
        try:
            data = await h3_get_json(
                peer.address,
                f"{API}/anchors",
                expected_id=peer.node_id,
                identity=self._identity,
                timeout=TIMEOUT,
            )
            anchors = Anchors.verify(data, peer.node_id)
        except HyperMeshError as exc:
            if network.last_error != str(exc):
                log.warning(
                    "federated registry unreachable",
                    extra={"network": network.name, "error": str(exc)},
                )
            network.last_error = str(exc)
            return
        network.members = {
            str(entry["identity"]): name
            for name, entry in anchors.members.items()
            if entry.get("identity") and str(entry["identity"]) not in anchors.revoked
        }
        network.last_error = None
