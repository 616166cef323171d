"""The node process: ``python -m hypermesh.node --config PATH``.

Start-up order: read the config (exit 2 when bad), take the node lock (exit 3 when another
process holds it), load or create the identity, bind the QUIC endpoint (HTTP/3 and DNS over
QUIC on one UDP port; DNS answered from ``zone_source``), publish ``runtime.json``. SIGTERM or
SIGINT closes the endpoint, withdraws ``runtime.json`` and releases the lock, in that order,
and exits 0. Any other failure to start exits 1 with one line on
stderr (which the controller appends to the node's log).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hypermesh import __version__
from hypermesh.chain.client import ask_witness
from hypermesh.chain.follower import ChainFollower, ChainPeer
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore, GroupAppender
from hypermesh.chain.witness import CosignatureStore, CosignCollector, Witness
from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.doq import DnsHandler
from hypermesh.dns.source import StaticZones, ZoneSource
from hypermesh.errors import HyperMeshError
from hypermesh.messaging.envelope import load_or_create_message_key
from hypermesh.messaging.inbox import Mailbox
from hypermesh.mirror.cache import ForwardingCache
from hypermesh.mirror.federation import FederatedNetwork, Federation
from hypermesh.mirror.follower import Follower, Peer
from hypermesh.node.chain_api import add_chain_routes
from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.node.interfaces import PrivateGate, PublicGate
from hypermesh.node.lockfile import AlreadyRunning, NodeLock
from hypermesh.node.logs import log_to_file
from hypermesh.node.message_api import add_message_routes
from hypermesh.node.metrics import NodeMetrics, add_metrics_route
from hypermesh.node.mirror_api import add_feed_routes, add_mirror_routes, zone_feed
from hypermesh.node.readiness import readiness
from hypermesh.node.registry_api import (
    add_registry_routes,
    expire_due,
    load_zones,
    publish_zones,
)
from hypermesh.node.rotation import finish_rotation, start_successor_chain
from hypermesh.node.router import Router
from hypermesh.node.routes import (
    NodeView,
    add_dns_routes,
    add_members_route,
    add_node_routes,
)
from hypermesh.node.runtime import (
    RuntimeInfo,
    previous_port,
    read_runtime,
    remove_runtime,
    with_port,
    write_runtime,
)
from hypermesh.node.server import Gate, QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.node.tunnel_api import add_tunnel_routes, deliver_to
from hypermesh.node.web import WebServer, start_web
from hypermesh.registry.service import Registry
from hypermesh.registry.zones import serial_of
from hypermesh.revocation import Lookup as RevocationLookup
from hypermesh.revocation import Revocation, Revocations
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import Identity, load_or_create_identity, read_node_id
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.onion import new_tunnel_key
from hypermesh.tunnel.relay import FORWARD_TIMEOUT, TunnelService

log = logging.getLogger("hypermesh.node")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
EXIT_ALREADY_RUNNING = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run a node until SIGTERM/SIGINT; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m hypermesh.node", description="Run one HyperMesh node."
    )
    parser.add_argument("--config", required=True, type=Path, help="the node's JSON config")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_quietly)  # until the event loop takes over

    try:
        config = NodeConfig.load(args.config)
    except (OSError, ValueError) as exc:
        return _fail(f"bad config {args.config}: {exc}", EXIT_BAD_CONFIG)

    node_dir = Path(config.node_dir)
    try:
        lock = NodeLock.acquire(node_dir)
    except AlreadyRunning as exc:
        return _fail(f"node {config.name} already running (pid {exc.pid})", EXIT_ALREADY_RUNNING)
    except OSError as exc:
        return _fail(f"node {config.name}: cannot lock {node_dir}: {exc}", EXIT_FAILED)

    try:
        log_to_file(Path(config.log_file), config.log_level)
        remove_runtime(node_dir)  # left behind by a process that died; it is not ours
        if finish_rotation(node_dir, CHAIN_DB):
            log.info("key rotated", extra={"node": config.name})
        identity = load_or_create_identity(node_dir)
        return asyncio.run(serve(config, identity))
    except (HyperMeshError, OSError) as exc:
        log.error("node failed", extra={"node": config.name, "error": str(exc)})
        return _fail(f"node {config.name}: {exc}", EXIT_FAILED)
    finally:
        remove_runtime(node_dir)
        lock.release()


def zone_source(config: NodeConfig) -> ZoneSource:
    """The zones this node serves over DoQ and DoH: the one place a registry's (or a mirror's)
    zone source plugs in. Empty unless the node is a registry."""
    return StaticZones()


REGISTRY_DB = "registry.db"
CHAIN_DB = "chain.db"
"""Under the node's directory: its own chain (SQLite, 0600)."""
MESSAGES_DB = "messages.db"
"""Under the node's directory: messages received and sent (its key is ``message.key``)."""
REPLICAS_DB = "replicas.db"
"""Under the node's directory: the chains it follows and the equivocations it knows."""
RECOVERY_TIMEOUT = 10.0
"""Seconds a starting node waits for its peers' copies of its own chain before appending."""
REGISTRY_ADMIN_DIR = "registry-admin"
"""Under the node's directory: the registry administrator's key (``identity.key``, 0600),
created with the registry. ``hmctl registry`` signs administration requests with it."""
EXPIRY_INTERVAL = 60.0
"""Seconds between the registry's sweeps: registrations whose term ran out, zones due to be
signed again in full."""


async def serve(config: NodeConfig, identity: Identity) -> int:
    """Serve until SIGTERM or SIGINT, publishing ``runtime.json`` while serving."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started_at = rfc3339(datetime.datetime.now(datetime.UTC))
    started_monotonic = time.monotonic()

    router = Router()
    metrics = NodeMetrics(
        name=config.name, network=config.network, identity=identity.node_id, version=__version__
    )
    zones = zone_source(config)
    registry: Registry | None = None
    follower: Follower | None = None
    cache: ForwardingCache | None = None
    operators: frozenset[str] = frozenset()  # keys the gates admit as this node's own
    tasks: list[asyncio.Task[None]] = []
    if "registry" in config.roles and isinstance(zones, StaticZones):
        admin = load_or_create_identity(Path(config.node_dir) / REGISTRY_ADMIN_DIR)
        registry = Registry.open(Path(config.node_dir) / REGISTRY_DB, admin=admin.node_id)
        operators = frozenset({admin.node_id})
        expire_due(registry, zones)
        load_zones(registry, zones, metrics.zone_serial, metrics.zone_problem)
        tasks.append(asyncio.create_task(_sweep(registry, zones, metrics.zone_serial)))
        feed = zone_feed(zones)
        add_registry_routes(
            router,
            registry,
            zones,
            on_registration=metrics.registration,
            on_serial=metrics.zone_serial,
            on_revocation=feed.revoked,
        )
        add_feed_routes(
            router, registry, zones, feed, identity, config.network, members=config.directory
        )
    elif config.registry is not None and isinstance(zones, StaticZones):
        follower = Follower(
            zones,
            lambda: _peer(config.registry),
            lambda: [p for p in map(_peer, config.peers) if p is not None],
            identity=identity,
            expire=config.mirror_expire,
            on_serial=metrics.zone_serial,
        )
        cache = ForwardingCache(lambda: _peer(config.registry), follower.knows, identity=identity)
        zones.listen(cache.zone_changed)
        tasks.append(asyncio.create_task(follower.run()))
        tasks.append(asyncio.create_task(follower.keep_marking_stale()))
        add_mirror_routes(router, follower)
    chain: ChainStore | None = None
    chain_peers: ChainFollower | None = None
    replicas: Replicas | None = None
    mailbox: Mailbox | None = None
    revocations = Revocations(_revocation_of(registry, follower))
    if config.chain:
        chain = ChainStore.open(Path(config.node_dir) / CHAIN_DB, identity)
        start_successor_chain(Path(config.node_dir), chain)
        replicas = Replicas.open(Path(config.node_dir) / REPLICAS_DB, revocations)
        chain_peers = ChainFollower(chain, replicas, lambda: _chain_peers(config))
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(_follow_chains(chain_peers, ready)))
        cosignatures = CosignatureStore(chain.connection)
        if config.witnesses:
            collector = CosignCollector(
                chain,
                cosignatures,
                lambda: _chain_peers(config),
                config.witnesses,
                functools.partial(ask_witness, identity=identity),
                revocations=revocations,
            )
            tasks.append(asyncio.create_task(_collect_cosignatures(collector)))
        appender = GroupAppender(chain)
        add_chain_routes(
            router,
            chain,
            replicas=replicas,
            ready=ready,
            witness=Witness(replicas.connection, identity, revocations=revocations),
            cosignatures=cosignatures,
            appender=appender,
            revocations=revocations,
        )
        mailbox = Mailbox.open(Path(config.node_dir) / MESSAGES_DB)
        message_key = load_or_create_message_key(Path(config.node_dir))
        add_message_routes(
            router, identity, message_key, mailbox, appender, ready=ready, revocations=revocations
        )
    answerer = DnsEngine(zones)
    add_dns_routes(router, answerer, metrics, cache.answer if cache is not None else None)
    local = metrics.metered("doq", answerer.answer)
    dns_answer: DnsHandler = local
    if cache is not None:  # a mirror forwards what its copies do not hold
        forward = cache.answer

        def forwarding(query: bytes) -> bytes | Awaitable[bytes | None] | None:
            answer = local(query)
            return answer if answer is None else forward(query, answer)

        dns_answer = forwarding

    add_metrics_route(router, metrics)
    revoked = revocations.is_revoked if registry is not None or follower is not None else None
    federation: Federation | None = None
    if config.federation:
        federation = Federation(
            [
                FederatedNetwork(f.name, functools.partial(_peer, f.registry))
                for f in config.federation
            ],
            identity=identity,
        )
        tasks.append(asyncio.create_task(federation.run()))
    federated = federation.member if federation is not None else None
    public_gate: Gate | None = (
        PublicGate.of(
            config.name, config.directory, config.public_policy, revoked, federated, operators
        ).check
        if config.public_policy is not None or revoked is not None
        else None
    )
    endpoint = await bind_endpoint(
        config.host,
        config.port,
        configuration=server_configuration(identity),
        router=router,
        dns_answer=dns_answer,
        prefer_port=config.prefer_port,
        gate=public_gate,
        peer_of=PublicGate.of(config.name, config.directory, None, federated=federated).who,
        limits=config.limits,
    )
    private: QuicEndpoint | None = None
    if config.private_listen is not None:
        gate = PrivateGate.of(
            config.name, config.directory, config.private_policy, revoked, federated, operators
        )
        host, port = parse_address(config.private_listen)
        try:
            private = await bind_endpoint(
                host,
                port,
                configuration=server_configuration(identity),
                router=router,
                dns_answer=dns_answer,
                prefer_port=previous_port(Path(config.node_dir), config.private_listen, "private"),
                gate=gate.check,
                peer_of=gate.who,
                limits=config.limits,
            )
        except OSError:
            endpoint.close()
            raise
    ephemeral: QuicEndpoint | None = None
    pool = ConnectionPool(None)  # relays forward anonymously: a hop learns no identity
    tunnels: TunnelService | None = None
    if config.ephemeral_listen is not None:
        # Without an ephemeral policy, tunnel requests are held to the public interface's.
        tunnel_gate = (
            PublicGate.of(
                config.name, config.directory, config.ephemeral_policy, revoked, federated
            ).check
            if config.ephemeral_policy is not None
            else public_gate
        )

        async def relay_on(address: str, node_id: str, path: str, body: bytes) -> Any:
            return await pool.request(
                address, node_id, "POST", path, body=body, timeout=FORWARD_TIMEOUT
            )

        tunnels = TunnelService(
            identity,
            new_tunnel_key(),
            relay_on,
            deliver_to(router, tunnel_gate),
            relays="relay" in config.roles,
        )
        tasks.append(asyncio.create_task(_sweep_tunnels(tunnels)))
        host, port = parse_address(config.ephemeral_listen)
        try:
            ephemeral = await bind_endpoint(
                host,
                port,
                configuration=server_configuration(identity, doq=False),
                router=add_tunnel_routes(Router(), tunnels),
                prefer_port=previous_port(
                    Path(config.node_dir), config.ephemeral_listen, "ephemeral"
                ),
                gate=tunnel_gate,
                limits=config.limits,
            )
        except OSError:
            endpoint.close()
            if private is not None:
                private.close()
            raise
    runtime = RuntimeInfo(
        pid=os.getpid(),
        address=endpoint.address,
        identity=identity.node_id,
        started_at=started_at,
        version=__version__,
        generation=config.generation,
        private=private.address if private is not None else None,
        ephemeral=ephemeral.address if ephemeral is not None else None,
    )
    add_node_routes(
        router,
        NodeView(config, runtime, started_monotonic, _zones_status(zones, follower, chain_peers)),
    )
    add_members_route(router, lambda: _members(config, runtime))
    node_dir = Path(config.node_dir)
    web: WebServer | None = None
    try:
        if config.web_listen is not None:
            h3_port = config_port(endpoint.address)
            before = previous_port(node_dir, config.web_listen, "web")
            try:  # the port it had first, else any free one
                web = await start_web(with_port(config.web_listen, before), router, h3_port=h3_port)
            except OSError:
                if before is None:
                    raise
                web = await start_web(config.web_listen, router, h3_port=h3_port)
            runtime = dataclasses.replace(runtime, web=web.address)
        write_runtime(node_dir, runtime)
        log.info(
            "node started",
            extra={
                "node": config.name,
                "network": config.network,
                "address": runtime.address,
                "identity": identity.node_id,
                "pid": runtime.pid,
                "web": runtime.web,
                "generation": config.generation,
                "version": __version__,
            },
        )
        await stop.wait()
        log.info("node stopping", extra={"node": config.name})
    finally:
        for task in tasks:
            task.cancel()
        if web is not None:
            web.close()
        endpoint.close()
        if private is not None:
            private.close()
        if ephemeral is not None:
            ephemeral.close()
        if tunnels is not None:
            tunnels.clear()
        await pool.aclose()
        if registry is not None:
            registry.close()
        if chain is not None:
            chain.close()
        if replicas is not None:
            replicas.close()
        if mailbox is not None:
            mailbox.close()
        remove_runtime(node_dir)
    log.info("node stopped", extra={"node": config.name})
    return EXIT_OK


async def _sweep(
    registry: Registry, zones: StaticZones, on_serial: Callable[[str, int], None]
) -> None:
    """Expire the registrations whose term ran out; sign again the zones due for it."""
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL)
        try:
            expired = await asyncio.to_thread(registry.expire_due)
            resigned = await asyncio.to_thread(registry.resign_due)
            publish_zones(registry, zones, resigned, on_serial)
        except HyperMeshError as exc:
            log.warning("registry sweep failed", extra={"error": str(exc)})
            continue
        for name in expired:
            zones.remove(name)
            log.info("registration expired", extra={"tld": name})
        for name in resigned:
            log.info("zone signed again in full", extra={"tld": name})


def _revocation_of(registry: Registry | None, follower: Follower | None) -> RevocationLookup:
    """Where this node learns of revoked keys: its own registry's table, or the registry's
    anchors as its mirror holds them (read at every question)."""

    def of(node_id: str) -> Revocation | None:
        if registry is not None:
            found = registry.revocations().get(node_id) if registry.is_revoked(node_id) else None
            return None if found is None else Revocation(node_id, found.replaced_by)
        anchors = follower.state.anchors if follower is not None else None
        entry = anchors.revoked.get(node_id) if anchors is not None else None
        if entry is None:
            return None
        successor = entry.get("replacedBy")
        return Revocation(node_id, successor if isinstance(successor, str) else None)

    return of


def _peer(upstream: Upstream | None) -> Peer | None:
    """Where ``upstream`` answers now (a local node: from its runtime file and key)."""
    if upstream is None:
        return None
    if upstream.node_dir is None:
        assert upstream.address is not None
        return Peer(upstream.address, upstream.identity)
    runtime = read_runtime(Path(upstream.node_dir))
    if runtime is None:
        return None
    return Peer(runtime.address, read_node_id(Path(upstream.node_dir)))


def _members(config: NodeConfig, runtime: RuntimeInfo) -> list[dict[str, object]]:
    me: dict[str, object] = {
        "name": config.name,
        "address": runtime.address,
        "identity": runtime.identity,
        "roles": list(config.roles),
    }
    registry = _peer(config.registry)
    known: list[tuple[Peer | None, list[str]]] = [(registry, ["registry"])]
    known += [(_peer(upstream), []) for upstream in config.peers]
    others: list[dict[str, object]] = [
        {"address": p.address, "identity": p.identity, "roles": roles}
        for p, roles in known
        if p is not None and p.identity
    ]
    return [me, *others]


def _chain_peers(config: NodeConfig) -> list[ChainPeer]:
    """The peers as the chain follower needs them: reachable now, key known."""
    found = [_peer(upstream) for upstream in (*config.peers, config.registry)]
    return [ChainPeer(p.address, p.identity) for p in found if p is not None and p.identity]


async def _sweep_tunnels(tunnels: TunnelService, interval: float = 1.0) -> None:
    """Drop the circuits whose expiry has passed, with their keys."""
    while True:
        await asyncio.sleep(interval)
        tunnels.sweep()


async def _follow_chains(follower: ChainFollower, ready: asyncio.Event) -> None:
    """Take back lost own blocks from the peers (bounded), allow appends, then follow."""
    try:
        async with asyncio.timeout(RECOVERY_TIMEOUT):
            await follower.recover_own()
    except TimeoutError:
        log.warning("peers did not answer about the node's own chain in time")
    finally:
        ready.set()
    await follower.run()


async def _collect_cosignatures(collector: CosignCollector, interval: float = 1.0) -> None:
    """Keep asking peers to witness the latest checkpoint."""
    while True:
        try:
            await collector.round()
        except Exception:  # a peer's bad answer must not end the task
            log.exception("cosigning round failed")
        await asyncio.sleep(interval)


def _zones_status(
    zones: ZoneSource, follower: Follower | None, chains: ChainFollower | None = None
) -> Callable[[], dict[str, object]]:
    """What ``/status`` says of the zones served: each serial, the mirror's state, and whether
    the node is ready (``node.readiness``)."""

    def status() -> dict[str, object]:
        served = {
            origin.to_text(): serial_of(zone) for origin, zone in sorted(zones.zones().items())
        }
        out: dict[str, object] = {"zones": served}
        if follower is not None:
            out["mirror"] = follower.status()
        out["readiness"] = readiness(follower, chains)
        return out

    return status


def config_port(address: str) -> int:
    return parse_address(address)[1]


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr, flush=True)
    return code


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(EXIT_OK)
