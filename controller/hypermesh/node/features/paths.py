"""Paths to peers (``node.paths``): every node with a registry dials its peers by key from its
one UDP socket, attaches to a home relay, learns where its packets are seen to come from, and
answers the paths API (``node.paths_api``). It opens after the public interface (whose
endpoint it uses) and before the directory (which publishes what it learns).

- **Home relay**: the first of the configured ``relays`` that answers, else the relay-role
  nodes of the network's directory (asked at the registry); a relay-role node is its own relay.
  While the directory names none, the registry is asked again when the directory zone changes
  (a record published; once for the changes of ``RELAY_SETTLE``, so that a network of 50
  starting asks a few times, not 50), else after 10 s doubling to ``RELAY_LOOK_MOST`` (5 min).
- **Observation**, every ``path_observe`` seconds: a fresh QUIC connection from the node's
  socket to the registry asks ``GET /paths/v1/observed``; with the home relay's view (when it is
  attached over UDP) that gives the reflexive addresses and the NAT kind (``node.punch``). A
  change punches every relayed peer again and makes the directory publish the record anew. A
  node seen at its own address (NAT kind ``public``: no mapping to lose) is observed every
  ``OBSERVE_PUBLIC`` times ``path_observe``; one nobody observed yet (its registry not running
  or not answering) again after 1 s doubling up to ``path_observe``.
- **Port mapping** (``transport.portmap``): the node asks its default gateway for a NAT-PMP
  mapping of its UDP port (IPv4; not when it listens on loopback or IPv6 only); the mapped
  address is its first reflexive address while the mapping is held, and dropped when it is
  lost or deleted (on close). Where nothing answers within 1.75 s the node goes on without.
  ``hypermesh_port_mapping{protocol}`` is 1 while a mapping is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Callable

import dns.name
from prometheus_client import Counter, Gauge

from hypermesh.errors import HyperMeshError
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task
from hypermesh.node.hostaddresses import expand_wildcard, local_addresses
from hypermesh.node.paths import PathManager
from hypermesh.node.paths_api import add_paths_routes
from hypermesh.registry.client import API
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import H3ClientProtocol
from hypermesh.transport.identity import is_node_id
from hypermesh.transport.noderecord import DIRECTORY_ZONE, BadNodeRecord, NodeRecord
from hypermesh.transport.portmap import NatPmpClient, PortMapping

log = logging.getLogger("hypermesh.paths")

OBSERVE_TIMEOUT = 3.0
OBSERVE_RETRY = 1.0
"""Seconds before observing again when nobody observed the node (doubling to
``path_observe``): a node learns its reflexive address soon after its registry answers."""
OBSERVE_PUBLIC = 4
"""A node seen at its own address (NAT kind ``public``) is observed every this many times
``path_observe`` (2 min by default): each observation is a QUIC handshake with the registry,
and without a NAT there is no mapping to change or lose."""
RELAY_RETRY = 10.0
"""Seconds before relays that did not answer are tried again."""
RELAY_SETTLE = 1.0
"""Seconds a directory change waits for the next before the registry is asked for relays."""
RELAY_LOOK_MOST = 300.0
"""While the directory names no relay, the registry is asked again when the directory zone
changes (a node published its record) and after this long; where the node does not hold the
zone (a public network's mirrors, or before its first copy), after ``RELAY_RETRY`` doubling to
this."""


class PathsFeature:
    """A node with a registry (or that is one) keeps paths to its peers."""

    name = "paths"

    def enabled(self, config: NodeConfig) -> bool:
        return config.registry is not None or "registry" in config.roles or bool(config.relays)

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        if node.endpoint is None:
            return
        metrics = PathMetrics(node)
        paths = PathManager(
            identity=node.identity,
            endpoint=node.endpoint,
            locate=lambda target: _locate(node, target),
            keepalive=node.config.path_keepalive,
            on_event=metrics.event,
        )
        metrics.watch(paths)
        node.paths = paths
        add_paths_routes(
            node.router,
            paths,
            own=lambda: {node.identity.node_id, *node.operators},
            admits=_admits(node),
        )
        stack.push_async_callback(paths.aclose)
        start_task(stack, paths.upkeep())
        start_task(stack, _keep_home_relay(node, paths))
        observer = _Observer(node, paths)
        mapper = _port_mapper(paths.endpoint.local_address, observer, metrics)
        if mapper is not None:
            stack.push_async_callback(mapper.aclose)  # after its task: the mapping deleted
        start_task(stack, observer.run())
        if mapper is not None:
            start_task(stack, mapper.run())


async def _locate(node: NodeContext, target: str) -> NodeRecord | None:
    registry = node.registry_ref()
    if registry is None:
        raise HyperMeshError("this node has no registry to find peers in")
    client = node.registry_client(registry)
    if is_node_id(target):
        return await client.node_record(node_id=target)
    return await client.node_record(name=target)


def _admits(node: NodeContext) -> Callable[[str], bool]:
    """Who may ask this node for a punch: anyone in a public network, else a member."""
    if node.config.network_mode == "public":
        return lambda _key: True
    return node.admits_member()


async def _relay_candidates(node: NodeContext) -> list[tuple[str, tuple[str, ...]]]:
    """Relays to attach to: the configured ones, else the directory's relay-role nodes."""
    found = [node.upstream(u) for u in node.config.relays]
    configured: list[tuple[str, tuple[str, ...]]] = [
        (p.node_id, (p.address,)) for p in found if p is not None and p.node_id
    ]
    if configured or node.config.relays:
        return configured
    registry = node.registry_ref()
    if registry is None:
        return []
    status, data = await node.registry_client(registry).call("GET", f"{API}/nodes?limit=100")
    out: list[tuple[str, tuple[str, ...]]] = []
    for item in data.get("items", []) if status == 200 else []:
        with contextlib.suppress(BadNodeRecord):
            record = NodeRecord.verify(item)
            if "relay" in record.roles and record.addresses:
                out.append((record.node_id, record.addresses))
    return out


async def _keep_home_relay(node: NodeContext, paths: PathManager) -> None:
    """Attach to a home relay, and to another when it stays unreachable; while there is none
    to attach to, look again when the directory changes (``RELAY_LOOK_MOST``)."""
    if "relay" in node.config.roles:
        return  # a relay is reached directly: it is nobody's client
    directory = dns.name.from_text(DIRECTORY_ZONE)
    changed = asyncio.Event()
    node.zones.listen(lambda origin, _zone: changed.set() if origin == directory else None)
    wait = RELAY_RETRY
    while True:
        changed.clear()
        try:
            candidates = [c for c in await _relay_candidates(node) if c[0] != node.identity.node_id]
        except (HyperMeshError, OSError) as exc:
            log.info("no relay list yet", extra={"error": str(exc)})
            candidates, wait = [], RELAY_RETRY
        for relay_id, addresses in candidates:
            link = paths.set_home(relay_id, addresses)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELAY_RETRY):
                    await link.ready.wait()
                await asyncio.Event().wait()  # RelayLink.run reconnects it from here on
        if candidates:
            wait = RELAY_RETRY  # none answered: try them again soon
        elif directory in node.zones.zones():
            wait = RELAY_LOOK_MOST  # the node follows the directory: its changes wake this
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), wait)
            await asyncio.sleep(RELAY_SETTLE)  # the changes of a burst (nodes starting): one look
        wait = min(wait * 2, RELAY_LOOK_MOST)


class _Observer:
    """Every ``path_observe`` seconds, and at once when the port mapping changes: where the
    node's packets are seen to come from (and the mapping), told to the paths."""

    def __init__(self, node: NodeContext, paths: PathManager) -> None:
        self.node, self.paths = node, paths
        self.mapping: PortMapping | None = None
        self.wake = asyncio.Event()
        self.retry = OBSERVE_RETRY

    def mapped(self, mapping: PortMapping | None) -> None:
        """The port mapping was granted, changed or lost: observe again now."""
        self.mapping = mapping
        self.wake.set()

    async def run(self) -> None:
        node, paths = self.node, self.paths
        while True:
            self.wake.clear()
            public = node.addresses.public
            local = expand_wildcard(public, local_addresses) if public else []
            if paths.local and local != paths.local:
                await _reattach(paths)  # the relays saw the old address: they must see the new
            seen, udp = await _observations(node, paths)
            paths.observed(local, seen, udp, self.mapping)
            with contextlib.suppress(TimeoutError):
                every = self.next_look(bool(seen) or "registry" in node.config.roles)
                async with asyncio.timeout(every):
                    await self.wake.wait()

    def next_look(self, observed: bool) -> float:
        """Seconds to the next observation: ``path_observe``, ``OBSERVE_PUBLIC`` times that for
        a node seen at its own address; while nobody observed the node (its registry not
        known or not answering yet), ``OBSERVE_RETRY`` doubling up to ``path_observe``."""
        every = self.node.config.path_observe
        if not observed:
            wait, self.retry = self.retry, min(self.retry * 2, every)
            return min(wait, every)
        self.retry = OBSERVE_RETRY
        return every * OBSERVE_PUBLIC if self.paths.nat == "public" else every


def _port_mapper(bound: str, observer: _Observer, metrics: PathMetrics) -> NatPmpClient | None:
    """A NAT-PMP client for the node's UDP port, asking from the address the node's socket is
    bound to; None where a mapping means nothing (loopback, IPv6)."""
    try:
        host, port = parse_address(bound)
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_loopback or (ip.version == 6 and not ip.is_unspecified):
        return None
    bind = str(ip) if ip.version == 4 and not ip.is_unspecified else "0.0.0.0"  # noqa: S104

    def changed(mapping: PortMapping | None) -> None:
        metrics.port_mapping.labels("nat-pmp").set(0 if mapping is None else 1)
        observer.mapped(mapping)

    return NatPmpClient(port, bind=bind, on_change=changed)


async def _reattach(paths: PathManager) -> None:
    """Attach to every relay again (a new network): wait a little for the home relay."""
    for link in paths.relays.values():
        link.reattach()
    home = paths.relays.get(paths.home) if paths.home else None
    if home is None:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(OBSERVE_TIMEOUT):
            await home.ready.wait()


async def _observations(node: NodeContext, paths: PathManager) -> tuple[list[str], bool]:
    seen: list[str] = []
    udp = False
    registry = node.registry_ref()
    if registry is not None and "registry" not in node.config.roles:
        address = parse_address(registry.address)
        try:
            async with asyncio.timeout(OBSERVE_TIMEOUT):
                h3 = await paths.endpoint.dial(
                    address,
                    expected_id=registry.node_id,
                    identity=node.identity,
                    protocol=H3ClientProtocol,
                )
                try:
                    status, _, body = await h3.request("GET", "/paths/v1/observed")
                finally:
                    h3.close()
            udp = True
            observed = json.loads(body).get("observed") if status == 200 else None
            if isinstance(observed, str):
                seen.append(observed)
        except (TimeoutError, HyperMeshError, OSError, ValueError) as exc:
            log.debug("registry did not observe us over UDP", extra={"error": str(exc)})
    home = paths.relays.get(paths.home) if paths.home else None
    if home is not None and home.transport == "udp" and home.observed:
        udp = True
        seen.append(home.observed)
    if registry is None or "registry" in node.config.roles or "relay" in node.config.roles:
        udp = True  # the authority and relays are reached at their own addresses
    return seen, udp


def _counter(paths: PathManager, kind: str) -> Callable[[], float]:
    return lambda: float(sum(1 for link in paths.links.values() if link.path == kind))


class PathMetrics:
    """The paths' Prometheus metrics, on the node's registry."""

    def __init__(self, node: NodeContext) -> None:
        registry = node.metrics.registry
        self.connections = Counter(
            "hypermesh_path_connections",
            "Connections to peers established, by path (direct or relayed).",
            ["path"],
            registry=registry,
        )
        self.attempts = Counter(
            "hypermesh_holepunch_attempts",
            "Hole-punch attempts, by this node's and the peer's NAT kind.",
            ["local_nat", "remote_nat"],
            registry=registry,
        )
        self.successes = Counter(
            "hypermesh_holepunch_successes",
            "Hole-punch attempts that ended on a direct path, by NAT kinds.",
            ["local_nat", "remote_nat"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "hypermesh_path_fallbacks",
            "Direct paths lost (the link fell back to its relay).",
            registry=registry,
        )
        self.paths = Gauge(
            "hypermesh_paths", "Peers by their current path.", ["path"], registry=registry
        )
        self.port_mapping = Gauge(
            "hypermesh_port_mapping",
            "1 while the node's router maps its UDP port for anyone (by protocol: nat-pmp).",
            ["protocol"],
            registry=registry,
        )
        self.port_mapping.labels("nat-pmp").set(0)

    def watch(self, paths: PathManager) -> None:
        for kind in ("direct", "relayed"):
            self.paths.labels(kind).set_function(_counter(paths, kind))

    def event(self, name: str, labels: dict[str, str]) -> None:
        if name == "connection":
            self.connections.labels(labels["path"]).inc()
        elif name == "punch":
            self.attempts.labels(labels["local_nat"], labels["remote_nat"]).inc()
        elif name == "punched":
            self.successes.labels(labels["local_nat"], labels["remote_nat"]).inc()
        elif name == "fallback":
            self.fallbacks.inc()
