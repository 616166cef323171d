"""A node serving the signed test zone, run in a thread for a module: the real features (DNS,
the public interface, the TLS listener on TCP) opened on a ``NodeContext`` as a node process
opens them, so that blocking clients (dnspython, kdig in a subprocess) can query it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hypermesh.dns.source import StaticZones
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.features.dns import DnsFeature
from hypermesh.node.features.public import PublicInterface
from hypermesh.node.features.tls_tcp import TlsTcpFeature
from hypermesh.node.tls_tcp import spki_pin
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import SignedZone, make_zone, sign


@dataclass(frozen=True)
class TcpNode:
    """Where the node answers: one port number, UDP (DoQ, DoH3) and TCP (DoT, DoH2)."""

    port: int
    node_id: str
    signed: SignedZone

    @property
    def pin(self) -> str:
        return spki_pin(self.node_id)


def node_config(
    base: Path, name: str, listen: str = "127.0.0.1:0", roles: tuple[str, ...] = ()
) -> NodeConfig:
    node_dir = base / name
    node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return NodeConfig(
        name=name,
        network="lab",
        listen=listen,
        prefer_port=None,
        interfaces=("public",),
        roles=roles,
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
    )


class NodeThread:
    """Opens the features in a thread with its own loop until ``stop``; every wait bounded."""

    def __init__(self, config: NodeConfig, zones: StaticZones) -> None:
        self.config, self.zones = config, zones
        self.node: NodeContext | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dns-tcp-node", daemon=True)

    def start(self) -> NodeContext:
        self._thread.start()
        if not self._ready.wait(20):
            raise TimeoutError("the node did not start within 20 s")
        if self._error is not None:
            raise self._error
        assert self.node is not None
        return self.node

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        node = NodeContext.starting(self.config, Identity.generate())
        node.zones = self.zones
        async with contextlib.AsyncExitStack() as stack:
            for feature in (DnsFeature(), PublicInterface(), TlsTcpFeature()):
                await feature.open(node, stack)
            self.node = node
            self._ready.set()
            await self._stop.wait()


@pytest.fixture(scope="module")
def tcp_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpNode]:
    """One node for the module, serving the signed test zone on UDP and TCP."""
    signed = sign(make_zone())
    base = tmp_path_factory.mktemp("dns-tcp")
    thread = NodeThread(node_config(base, "alpha"), StaticZones([signed.zone]))
    try:
        node = thread.start()
        assert node.addresses.public is not None
        assert node.addresses.tls == node.addresses.public, "TCP on the UDP port's number"
        yield TcpNode(parse_address(node.addresses.public)[1], node.identity.node_id, signed)
    finally:
        thread.stop()
