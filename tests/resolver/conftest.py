"""Fixtures of the stub resolver tests, one network per module: a registry and a mirror as
real node processes on loopback with the TLD ``acme`` registered, a fake upstream resolver (a
real DNS server on UDP and TCP, answering ``*.example.test``), and stubs run in a thread."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from hypermesh.node.config import Upstream
from hypermesh.resolver import MeshSource, Resolver, Settings, Upstreams, running
from hypermesh.resolver.sources import DoqSource
from hypermesh.transport.address import PeerRef
from tests.harness.loop_thread import LoopThread
from tests.harness.nodes import NodeProc, Owner, answer_values, start_node, wait_for

UPSTREAM_ADDRESS = "192.0.2.99"
"""What the fake upstream answers for every name under example.test."""
BIG_TXT = [f'"{chr(97 + i) * 180}"' for i in range(5)]
"""TXT strings whose RRset is larger than 512 bytes and smaller than 1232."""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProc]]:
    """A registry and a mirror, ``acme`` registered with www A, a big TXT and an AAAA."""
    root = tmp_path_factory.mktemp("mesh")
    nodes: dict[str, NodeProc] = {}
    try:
        nodes["registry"] = start_node(
            root, "registry", roles=("registry",), listen=f"127.0.0.1:{free_port()}"
        )
        registry = nodes["registry"]
        nodes["m1"] = start_node(
            root, "m1", registry=Upstream(PeerRef(registry.address, registry.identity))
        )
        owner = Owner(registry)
        owner.register("acme")
        owner.put("acme", "www", "192.0.2.1")
        owner.call(
            "/registry/v1/rrsets",
            {
                "tld": "acme",
                "rrsets": [
                    {
                        "name": "big",
                        "type": "TXT",
                        "changetype": "REPLACE",
                        "ttl": 60,
                        "values": BIG_TXT,
                    }
                ],
            },
        )
        wait_for(
            lambda: len(nodes["m1"].ask("big.acme.", "TXT").answer) == 1,
            what="m1 to mirror acme",
        )
        assert answer_values(nodes["m1"].ask("www.acme.")) == {"192.0.2.1"}
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Any = self.server
        if isinstance(self.request, tuple):
            data, sock = self.request
            answer = fake_answer(data)
            if answer is not None:
                sock.sendto(answer, self.client_address)
            return
        conn: socket.socket = self.request
        conn.settimeout(5)
        header = conn.recv(2)
        if len(header) == 2:
            (length,) = struct.unpack("!H", header)
            data = b""
            while len(data) < length:
                chunk = conn.recv(length - len(data))
                if not chunk:
                    return
                data += chunk
            answer = fake_answer(data)
            if answer is not None:
                conn.sendall(struct.pack("!H", len(answer)) + answer)
        del server


def fake_answer(data: bytes) -> bytes | None:
    """The fake upstream's answer: every name under example.test is UPSTREAM_ADDRESS (A),
    every other name NXDOMAIN."""
    try:
        query = dns.message.from_wire(data)
    except Exception:
        return None
    reply = dns.message.make_response(query)
    question = query.question[0]
    if question.name.to_text().endswith("example.test."):
        if question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(question.name, 30, "IN", "A", UPSTREAM_ADDRESS))
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    return reply.to_wire()


class _Udp(socketserver.ThreadingMixIn, socketserver.UDPServer):
    allow_reuse_address = True
    daemon_threads = True


class _Tcp(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


class FakeUpstream:
    """A real DNS server on 127.0.0.1 (UDP and TCP, one port), which can be stopped and
    started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._servers: list[socketserver.BaseServer] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._servers = [
            _Udp(("127.0.0.1", self.port), _Handler),
            _Tcp(("127.0.0.1", self.port), _Handler),
        ]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


class StubThread(LoopThread):
    """A ``Resolver`` listening on 127.0.0.1 (a free port) in a thread with its own loop."""

    def __init__(
        self,
        source: Callable[[], MeshSource],
        upstreams: tuple[str, ...],
        *,
        forward: bool = True,
        status: Path | None = None,
    ) -> None:
        super().__init__("the stub")
        self._source, self._upstreams, self._forward, self._status = (
            source,
            upstreams,
            forward,
            status,
        )
        self.address = ""
        self.resolver: Resolver | None = None

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def start(self) -> StubThread:
        self.start_serving()
        return self

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        source = self._source()
        close = getattr(source, "close", None)
        if close is not None:
            stack.push_async_callback(close)
        self.resolver = Resolver(
            Settings(listen="127.0.0.1:0", forward=self._forward, mesh_timeout=2.0),
            source,
            Upstreams(self._upstreams, timeout=1.0),
        )
        bound = await stack.enter_async_context(running(self.resolver, self._status))
        self.address = bound.address


def doq_source(node: NodeProc, registry: NodeProc) -> Callable[[], MeshSource]:
    return lambda: DoqSource(PeerRef(node.address, node.identity), registry.identity, identity=None)


@pytest.fixture(scope="module")
def stub(mesh: dict[str, NodeProc], upstream: FakeUpstream) -> Iterator[StubThread]:
    """A stub asking m1 over DoQ, forwarding to the fake upstream."""
    thread = StubThread(doq_source(mesh["m1"], mesh["registry"]), (upstream.address,)).start()
    try:
        yield thread
    finally:
        thread.stop()
