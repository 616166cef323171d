"""The node directory, the node's side: it publishes its signed node record
(``hypermesh.transport.noderecord``) to its network's registry, so that other nodes find it by
key (``<node ID>._nodes.`` in the registry's DNS, or ``GET /registry/v1/node?id=``).

The record names where each of the node's interfaces is reached: for the public interface the
configured ``advertise`` addresses when given (what other hosts dial: a NAT's or a load
balancer's), otherwise the bound address; a wildcard host (``0.0.0.0``, ``::``) stands for every
non-loopback address of the host (loopback only when it has no other). It is published when the
node starts, again at half of its lifetime, when the addresses or the registry's address
change, and after a failure with a backoff (1 s doubling to 30 s). A change of the host's
addresses is announced by the kernel (``hostaddresses.AddressWatch``, netlink) and acted on at
once, and so is the home relay's attachment (its link's ``ready``); the registry's address and
what the node's paths observed are looked at every ``CHECK_INTERVAL`` (30 s), or every
``path_observe`` when that is shorter (the paths learn the node's reflexive addresses no more
often than that), and the host's addresses too where netlink is unavailable.

``seq`` only grows for one key, also across restarts: it is the larger of the wall clock in
milliseconds and the last one used plus one, remembered in the node's folder (``record.seq``),
so a registry never takes a replayed record for a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypermesh import __version__
from hypermesh.errors import HyperMeshError
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task
from hypermesh.node.hostaddresses import AddressWatch, expand_wildcard, local_addresses
from hypermesh.registry.client import refusal
from hypermesh.transport.address import PeerRef
from hypermesh.transport.noderecord import MAX_ADDRESSES, NodeRecord

log = logging.getLogger("hypermesh.node")

PUBLISH_PATH = "/registry/v1/nodes"
SEQ_FILE = "record.seq"
"""Under the node's directory: the last ``seq`` the node signed a record with."""
BACKOFF_FIRST = 1.0
BACKOFF_MOST = 30.0
CHECK_INTERVAL = 30.0
"""Seconds between looks at the registry's address and the paths' observations (and the
host's addresses without netlink), between publications; ``path_observe`` when shorter."""


PathsKnown = tuple[tuple[str, ...], tuple[str, tuple[str, ...]] | None]
"""What the node's paths know of it: its reflexive addresses, its home relay (ID, addresses)."""


class DirectoryFeature:
    """A node with a registry (or that is the registry) publishes its node record there."""

    name = "directory"

    def enabled(self, config: NodeConfig) -> bool:
        return config.registry is not None or "registry" in config.roles

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        watch = AddressWatch.open()
        if watch is not None:
            stack.callback(watch.close)
        publisher = Publisher(node, watch=watch)
        start_task(stack, publisher.run())


@dataclass(slots=True)
class Published:
    """The last record the registry took, and where."""

    record: NodeRecord
    registry: PeerRef
    at: float


class Publisher:
    """Keeps the node's record at its registry fresh."""

    def __init__(
        self,
        node: NodeContext,
        host_addresses: Callable[[], list[str]] | None = None,
        *,
        watch: AddressWatch | None = None,
    ):
        self.node = node
        self.watch = watch
        """Where the kernel's word of an address change arrives (None: no netlink here)."""
        self.host_addresses = host_addresses or (watch.addresses if watch else local_addresses)
        self.last: Published | None = None
        self.last_error: str | None = None

    def registry(self) -> PeerRef | None:
        """Where the registry answers now (``NodeContext.registry_ref``)."""
        return self.node.registry_ref()

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

    def paths(self) -> PathsKnown:
        """What the node's paths know of it: its reflexive addresses and its home relay."""
        paths = self.node.paths
        if paths is None:
            return (), None
        return tuple(paths.reflexive), paths.home_relay()

    async def run(self) -> None:
        """Publish, then again at half the lifetime, on a change, or after a backoff."""
        backoff = BACKOFF_FIRST
        while True:
            registry, interfaces, paths = self.registry(), self.interfaces(), self.paths()
            if registry is None:
                await asyncio.sleep(BACKOFF_FIRST)
                continue
            try:
                await self.publish(registry, interfaces, paths)
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
            await self._wait_for_refresh(registry, interfaces, paths)

    async def _wait_for_refresh(
        self, registry: PeerRef, interfaces: dict[str, list[str]], paths: PathsKnown
    ) -> None:
        """Sleep until half the lifetime has passed or the addresses or registry changed."""
        due = time.monotonic() + self.node.config.record_lifetime / 2
        look = min(CHECK_INTERVAL, self.node.config.path_observe)
        while (left := due - time.monotonic()) > 0:
            await self._wake(min(left, look))
            if (registry, interfaces, paths) != (self.registry(), self.interfaces(), self.paths()):
                log.info("node addresses or registry changed: publishing again")
                return

    def _attaching(self) -> asyncio.Event | None:
        """The home relay's ``ready`` while the node is attaching to it (set once attached,
        which the record then says), else None."""
        paths = self.node.paths
        link = paths.relays.get(paths.home) if paths is not None and paths.home else None
        return link.ready if link is not None and not link.ready.is_set() else None

    async def _wake(self, most: float) -> None:
        """Sleep ``most`` seconds, or until the kernel announces an address change or the home
        relay is attached."""
        attaching = self._attaching()
        events = [self.watch.changed] if self.watch is not None else []
        events += [attaching] if attaching is not None else []
        if not events:
            await asyncio.sleep(most)
            return
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, timeout=most, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.watch is not None:
            self.watch.changed.clear()

    async def publish(
        self,
        registry: PeerRef,
        interfaces: Mapping[str, Sequence[str]],
        paths: PathsKnown = ((), None),
    ) -> None:
        """Sign a record with the next ``seq`` and send it; ``HyperMeshError`` on a refusal."""
        node, config = self.node, self.node.config
        now = time.time()
        reflexive, relay = paths
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
            reflexive=reflexive,
            relay=relay,
        )
        client = node.registry_client(registry)
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
