"""The node directory, the node's side: it publishes its signed node record
(``hypermesh.transport.noderecord``) to its network's registry, so that other nodes find it by
key (``<node ID>._nodes.`` in the registry's DNS, or ``GET /registry/v1/node?id=``).

The record names where each of the node's interfaces is reached: for the public interface the
configured ``advertise`` addresses when given (what other hosts dial: a NAT's or a load
balancer's), otherwise the bound address; a wildcard host (``0.0.0.0``, ``::``) stands for every
non-loopback address of the host (loopback only when it has no other). It is published when the
node starts, again at half of its lifetime, at once when the addresses or the registry's
address change, and after a failure with a backoff (1 s doubling to 30 s).

``seq`` only grows for one key, also across restarts: it is the larger of the wall clock in
milliseconds and the last one used plus one, remembered in the node's folder (``record.seq``),
so a registry never takes a replayed record for a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypermesh import __version__
from hypermesh.errors import HyperMeshError
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task
from hypermesh.registry.client import RegistryClient, refusal
from hypermesh.transport.address import PeerRef, format_address, parse_address
from hypermesh.transport.noderecord import MAX_ADDRESSES, NodeRecord

log = logging.getLogger("hypermesh.node")

PUBLISH_PATH = "/registry/v1/nodes"
SEQ_FILE = "record.seq"
"""Under the node's directory: the last ``seq`` the node signed a record with."""
BACKOFF_FIRST = 1.0
BACKOFF_MOST = 30.0
CHECK_INTERVAL = 5.0
"""Seconds between looks at the host's addresses and the registry's, between publications."""


def is_wildcard(host: str) -> bool:
    """Whether ``host`` binds every address of the host (``0.0.0.0``, ``::`` or empty)."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class DirectoryFeature:
    """A node with a registry (or that is the registry) publishes its node record there."""

    name = "directory"

    def enabled(self, config: NodeConfig) -> bool:
        return config.registry is not None or "registry" in config.roles

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        publisher = Publisher(node)
        start_task(stack, publisher.run())


@dataclass(slots=True)
class Published:
    """The last record the registry took, and where."""

    record: NodeRecord
    registry: PeerRef
    at: float


class Publisher:
    """Keeps the node's record at its registry fresh."""

    def __init__(self, node: NodeContext, host_addresses: Callable[[], list[str]] | None = None):
        self.node = node
        self.host_addresses = host_addresses or local_addresses
        self.last: Published | None = None
        self.last_error: str | None = None

    def registry(self) -> PeerRef | None:
        """Where the registry answers now: the configured upstream, or this node itself."""
        node = self.node
        if "registry" in node.config.roles:
            address = node.addresses.public
            if address is None:
                return None
            host, port = parse_address(address)
            if is_wildcard(host):
                host = "::1" if ":" in host else "127.0.0.1"
            return PeerRef(format_address(host, port), node.identity.node_id)
        found = node.upstream(node.config.registry)
        return found if found is not None and found.node_id else None

    def interfaces(self) -> dict[str, list[str]]:
        """What the record says of each interface now (see the module's docstring)."""
        node, config = self.node, self.node.config
        bound = {
            "public": node.addresses.public,
            "private": node.addresses.private,
            "ephemeral": node.addresses.ephemeral,
        }
        out: dict[str, list[str]] = {}
        for interface, address in bound.items():
            if interface == "public" and config.advertise:
                out[interface] = list(config.advertise[:MAX_ADDRESSES])
            elif address is not None:
                found = expand_wildcard(address, self.host_addresses)
                if found:
                    out[interface] = found[:MAX_ADDRESSES]
        return out

    async def run(self) -> None:
        """Publish, then again at half the lifetime, on a change, or after a backoff."""
        backoff = BACKOFF_FIRST
        while True:
            registry, interfaces = self.registry(), self.interfaces()
            if registry is None:
                await asyncio.sleep(BACKOFF_FIRST)
                continue
            try:
                await self.publish(registry, interfaces)
            except (HyperMeshError, OSError) as exc:
                self.last_error = str(exc)
                log.warning(
                    "node record not published",
                    extra={"registry": registry.address, "error": str(exc), "retry_in": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MOST)
                continue
            backoff = BACKOFF_FIRST
            await self._wait_for_refresh(registry, interfaces)

    async def _wait_for_refresh(self, registry: PeerRef, interfaces: dict[str, list[str]]) -> None:
        """Sleep until half the lifetime has passed or the addresses or registry changed."""
        due = time.monotonic() + self.node.config.record_lifetime / 2
        while (left := due - time.monotonic()) > 0:
            await asyncio.sleep(min(left, CHECK_INTERVAL))
            if self.registry() != registry or self.interfaces() != interfaces:
                log.info("node addresses or registry changed: publishing again")
                return

    async def publish(self, registry: PeerRef, interfaces: Mapping[str, Sequence[str]]) -> None:
        """Sign a record with the next ``seq`` and send it; ``HyperMeshError`` on a refusal."""
        node, config = self.node, self.node.config
        now = time.time()
        record = NodeRecord.issue(
            node.identity,
            network=config.network,
            name=config.name,
            interfaces=interfaces,
            issued_at=now,
            lifetime=config.record_lifetime,
            seq=next_seq(node.node_dir, now),
            host=config.host_name,
            roles=config.roles,
            version=__version__,
        )
        client = RegistryClient(registry.address, registry.node_id, identity=node.identity)
        status, data = await client.call(
            "POST", PUBLISH_PATH, record.to_json(), signer=node.identity
        )
        if status != 200:
            raise HyperMeshError(f"the registry refused the node record: {refusal(status, data)}")
        self.last, self.last_error = Published(record, registry, now), None
        log.info(
            "node record published",
            extra={
                "registry": registry.address,
                "seq": record.seq,
                "addresses": {k: list(v) for k, v in record.interfaces.items()},
                "expires_at": record.expires_at,
            },
        )


def next_seq(node_dir: Path, now: float) -> int:
    """The next record ``seq``: above the last one used (``record.seq``) and at least the wall
    clock in milliseconds; remembered before it is used."""
    path = node_dir / SEQ_FILE
    try:
        last = int(path.read_text().strip())
    except (OSError, ValueError):
        last = -1
    seq = max(last + 1, int(now * 1000))
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f"{seq}\n")
    temporary.replace(path)
    return seq


def expand_wildcard(address: str, host_addresses: Callable[[], list[str]]) -> list[str]:
    """``address`` as others reach it: itself, or with a wildcard host each of the host's
    non-loopback addresses (of the family the wildcard binds: ``0.0.0.0`` IPv4, ``::`` both),
    loopback only when there is no other."""
    host, port = parse_address(address)
    if not is_wildcard(host):
        return [address]
    ipv4_only = ":" not in host
    found = [ipaddress.ip_address(a) for a in host_addresses()]
    if ipv4_only:
        found = [a for a in found if a.version == 4]
    usable = [a for a in found if not a.is_loopback and not a.is_link_local]
    if not usable:
        usable = [ipaddress.ip_address("127.0.0.1" if ipv4_only else "::1")]
    usable.sort(key=lambda a: (a.version == 6, a.packed))
    return [format_address(str(a), port) for a in dict.fromkeys(usable)]


def local_addresses() -> list[str]:
    """The host's IP addresses: IPv4 from each interface (``SIOCGIFADDR``), IPv6 from
    ``/proc/net/if_inet6``; on other systems what the host name resolves to."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        found += _ipv4_of_interfaces()
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    if not found:
        with contextlib.suppress(OSError):
            found = [str(i[4][0]) for i in socket.getaddrinfo(socket.gethostname(), None)]
    return list(dict.fromkeys(found))


def _ipv4_of_interfaces() -> list[str]:
    import fcntl  # Unix only; callers suppress the OSError elsewhere

    siocgifaddr = 0x8915
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), siocgifaddr, request)
            except OSError:
                continue  # no IPv4 address on this interface
            out.append(socket.inet_ntoa(answer[20:24]))
    return out
