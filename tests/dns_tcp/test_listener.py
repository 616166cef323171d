"""The TLS listener itself: a node process opens it, a taken TCP port (a node without the relay
starts anyway, a relay does not), its bound on connections, and the DoT idle timeout."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from hypermesh.dns.dot import serve_dot
from hypermesh.node.feature import NodeContext
from hypermesh.node.features.public import PublicInterface
from hypermesh.node.features.relay import RelayFeature
from hypermesh.node.features.tls_tcp import TlsTcpFeature
from hypermesh.node.tls_tcp import TlsLimits, TlsListener, TlsService, open_tls_listener
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.identity import Identity
from tests.dns_tcp.conftest import node_config
from tests.harness.node_process import NodeStarter

WAIT = 10.0


@contextlib.contextmanager
def taken_tcp_port() -> Iterator[socket.socket]:
    """A TCP port held by a listening socket that is not a node's (its UDP twin is free)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder


def test_a_node_whose_tcp_port_is_taken_starts_without_dot_and_says_so(tmp_path: Path) -> None:
    starter = NodeStarter(tmp_path)
    with taken_tcp_port() as holder:
        port = holder.getsockname()[1]
        try:
            node = starter.start("alpha", listen=f"127.0.0.1:{port}")
            status = asyncio.run(
                h3_get_json(node.address, "/status", expected_id=node.identity, identity=None)
            )
            assert status["address"] == f"127.0.0.1:{port}"
            deadline = time.monotonic() + WAIT
            while "DNS over TLS and HTTP/2 are off" not in node.log_file.read_text():
                assert time.monotonic() < deadline, node.log_file.read_text()
                time.sleep(0.05)
            assert f"cannot listen on TCP 127.0.0.1:{port}" in node.log_file.read_text()
            assert node.proc.poll() is None
            other = starter.start("beta")  # a free port: the node's features open the listener
            port = int(other.address.rsplit(":", 1)[1])
            query = dns.message.make_query("example.org.", "A")
            refused = dns.query.tls(query, "127.0.0.1", port=port, timeout=WAIT, verify=False)
            assert refused.rcode() == dns.rcode.REFUSED  # answered: it serves no zone
        finally:
            starter.stop_all()


def test_a_relay_whose_tcp_port_is_taken_does_not_start(tmp_path: Path) -> None:
    async def main(port: int) -> None:
        config = node_config(tmp_path, "relay", f"127.0.0.1:{port}", roles=("relay",))
        node = NodeContext.starting(config, Identity.generate())
        async with contextlib.AsyncExitStack() as stack:
            for feature in (PublicInterface(), RelayFeature()):
                await feature.open(node, stack)
            with pytest.raises(OSError, match=f"hm-relay cannot listen on TCP 127.0.0.1:{port}"):
                await TlsTcpFeature().open(node, stack)

    with taken_tcp_port() as holder:
        asyncio.run(asyncio.wait_for(main(holder.getsockname()[1]), 60))


def test_the_web_listener_asked_on_the_same_port_number_keeps_it(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = dataclasses.replace(
        node_config(tmp_path, "web", f"127.0.0.1:{port}"), web_listen=f"127.0.0.1:{port}"
    )

    async def main() -> None:
        node = NodeContext.starting(config, Identity.generate())
        node.dns_handler = lambda query: None
        async with contextlib.AsyncExitStack() as stack:
            for feature in (PublicInterface(), TlsTcpFeature()):
                await feature.open(node, stack)
            assert node.addresses.tls is None
            with socket.socket() as tcp:  # free for the web listener
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind(("127.0.0.1", port))

    asyncio.run(asyncio.wait_for(main(), 60))


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_connections_past_the_bound_are_closed_and_idle_ones_end() -> None:
    query = dns.message.make_query("www.hmtest.", "A").to_wire()

    def answer(wire: bytes) -> bytes:
        return wire[:2] + b"\x81\x00" + wire[4:]

    async def dot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_dot(reader, writer, answer, idle_timeout=0.3)

    async def ask(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_context())
        writer.write(len(query).to_bytes(2, "big") + query)
        return reader, writer, await reader.read(65536)

    async def main() -> None:
        listener = TlsListener(
            [TlsService("dot", dot)], without_alpn="dot", limits=TlsLimits(max_connections=1)
        )
        server = await open_tls_listener("127.0.0.1", 0, Identity.generate(), listener)
        port = server.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(WAIT):
                first_reader, first, answered = await ask(port)
                assert answered[2:4] == query[:2]
                _, second, refused = await ask(port)
                assert refused == b"" and listener.refused == 1
                second.close()
                assert await first_reader.read(10) == b"", "an idle connection is closed"
                first.close()
                assert not listener.open  # the server ended it before the client saw EOF
                _, third, answered = await ask(port)
                assert answered[2:4] == query[:2]
                third.close()
        finally:
            server.close()
            listener.close_all()

    asyncio.run(main())
