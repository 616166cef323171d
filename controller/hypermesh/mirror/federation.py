"""Members of federated networks, as their registries vouch for them.

A network may federate with others (``Network.spec.federation``), each named by its registry's
key. Every node of the network that gates an interface keeps, for each federated network, the
members that registry lists in its signed anchors (``hypermesh.mirror.anchors``), minus the keys
it revoked. A caller whose key is among them is known as ``NETWORK/MEMBER``, ``NETWORK`` being
the name this network gives the federated one.

Nothing is polled: the node keeps one connection to each federated registry with its change
feed open (``GET /registry/v1/watch``, ``hypermesh.mirror.feed``) and fetches the anchors over
it when it connects and at every notice (a revocation, a zone changed: a member published its
record), so a revocation there is acted on here within a round trip; the feed's heartbeats
keep the connection, and it is opened afresh every ``SAFETY`` seconds (a member added with no
notice). When a federated registry cannot be reached, the last members it vouched for are
kept: a federation outage does not lock partners out, and the node connects again after
``RETRY`` waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.follower import API, SILENCE
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import H3ClientProtocol, get_json, h3_get_json
from hypermesh.transport.feeds import watched
from hypermesh.transport.identity import Identity

log = logging.getLogger("hypermesh.mirror")

TIMEOUT = 5.0
"""Seconds to connect to a federated registry and have its feed answered, or an anchors fetch."""
SAFETY = 300.0
"""Seconds a watch of a federated registry is kept before it is opened afresh (and the anchors
fetched again): members added without a notice on the feed are known within this long."""
RETRY = (1.0, 2.0, 5.0, 15.0, 30.0)
"""Waits before connecting again to a federated registry that failed, the last repeated."""


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
        safety: float = SAFETY,
        *,
        identity: Identity | None,
    ) -> None:
        self._networks = list(networks)
        self._changed = asyncio.Event()
        self._safety = safety
        self._identity = identity

    @property
    def networks(self) -> list[FederatedNetwork]:
        """The federated networks followed (set anew on a reload: ``run`` follows the new)."""
        return self._networks

    @networks.setter
    def networks(self, networks: Sequence[FederatedNetwork]) -> None:
        self._networks = list(networks)
        self._changed.set()

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
        """Follow every federated network (``follow``), forever; those a reload adds too,
        and no more those it removes."""
        following: dict[int, tuple[FederatedNetwork, asyncio.Task[None]]] = {}
        try:
            while True:
                self._changed.clear()
                now = {id(network): network for network in self._networks}
                for key in following.keys() - now.keys():
                    following.pop(key)[1].cancel()
                for key in now.keys() - following.keys():
                    following[key] = (now[key], asyncio.create_task(self.follow(now[key])))
                await self._changed.wait()
        finally:
            for _, task in following.values():
                task.cancel()

    async def follow(self, network: FederatedNetwork) -> None:
        """Watch ``network``'s registry and take its members at every notice, forever."""
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self._safety) as safety:
                    await self._watch(network)
            except TimeoutError:
                if safety.expired():
                    attempt = 0  # kept for ``SAFETY`` seconds: opened afresh at once
                    continue
                error = "no answer in time"
            except (HyperMeshError, OSError) as exc:
                error = str(exc) or type(exc).__name__
            if network.last_error is None:
                attempt = 0  # it was following: the first wait again
            self._failed(network, error)
            await asyncio.sleep(RETRY[min(attempt, len(RETRY) - 1)])
            attempt += 1

    async def _watch(self, network: FederatedNetwork) -> None:
        peer = network.registry()
        if peer is None or peer.node_id is None:
            raise HyperMeshError("the federated registry is not running")
        async with watched(
            peer.address,
            peer.node_id,
            f"{API}/watch",
            identity=self._identity,
            silence=SILENCE,
            timeout=TIMEOUT,
        ) as (h3, notices):
            async for _notice in notices:  # the first: the feed's snapshot
                self._take(network, await _anchors(h3, peer.node_id))
        raise TransportError(f"{peer.address}: the federated registry ended the watch")

    def _failed(self, network: FederatedNetwork, error: str) -> None:
        if network.last_error != error:
            log.warning(
                "federated registry unreachable",
                extra={"network": network.name, "error": error},
            )
        network.last_error = error

    async def refresh(self, network: FederatedNetwork) -> None:
        """Fetch ``network``'s anchors once, on a connection of their own."""
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
            self._failed(network, str(exc))
            return
        self._take(network, anchors)

    @staticmethod
    def _take(network: FederatedNetwork, anchors: Anchors) -> None:
        """The members ``anchors`` vouch for, minus the keys they list as revoked."""
        network.members = {
            str(entry["identity"]): name
            for name, entry in anchors.members.items()
            if entry.get("identity") and str(entry["identity"]) not in anchors.revoked
        }
        network.last_error = None


async def _anchors(h3: H3ClientProtocol, registry: str) -> Anchors:
    """The anchors of ``registry``, asked over the watch's connection and checked."""
    return Anchors.verify(await get_json(h3, f"{API}/anchors", timeout=TIMEOUT), registry)
