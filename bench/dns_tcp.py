"""DNS over TLS and DNS over HTTPS on HTTP/2 against DNS over QUIC, on one node, warm.

The server is a node's own features (DNS, the public interface, the TLS listener on TCP) on a
``NodeContext`` serving a generated zone of 1,000 records, in a child process (``--serve``);
this process is the client, on one connection per transport, opened before the clock starts
(warm: no handshake in the figures). Each row prints queries per second and the server's CPU
time per query (from ``/proc/PID/stat``: the figure to read, as the Python client is often
the bottleneck). Rows: ``doq``, ``dot`` and ``doh2`` (POST), each one query at a time
(``-1``) and 64 in flight on the one connection (``-64``).

Run by hand, not by the tests::

    .venv/bin/python bench/dns_tcp.py                      # 2,000 queries a row
    .venv/bin/python bench/dns_tcp.py --queries 500        # quick

Every row is bounded in count (``--queries``) and in time (``--seconds``, default 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.zone
import h2.config
import h2.connection
import h2.events
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamDataReceived

from hypermesh.dns.source import StaticZones
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.features.dns import DnsFeature
from hypermesh.node.features.public import PublicInterface
from hypermesh.node.features.tls_tcp import TlsTcpFeature
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import Identity

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness
from tests.harness.proc import cpu_seconds

ZONE_RECORDS = 1000
QUERY_NAME = "host7.bench."

Ask = Callable[[], Awaitable[bytes]]


def bench_zone() -> dns.zone.Zone:
    lines = ["$TTL 300", "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 120", "@ IN NS ns1"]
    lines += ["ns1 IN A 192.0.2.1"]
    lines += [f"host{n} IN A 198.51.{n // 256 % 256}.{n % 256}" for n in range(ZONE_RECORDS)]
    return dns.zone.from_text("\n".join(lines) + "\n", origin="bench.", relativize=True)


def query_wire() -> bytes:
    query = dns.message.make_query(QUERY_NAME, "A")
    query.id = 0
    return query.to_wire()


# -- the server (child process) -------------------------------------------------------------


async def serve(folder: Path) -> None:
    config = NodeConfig(
        name="bench",
        network="bench",
        listen="127.0.0.1:0",
        prefer_port=None,
        interfaces=("public",),
        roles=(),
        tags=(),
        generation=1,
        node_dir=str(folder),
        log_file=str(folder / "node.log"),
    )
    node = NodeContext.starting(config, Identity.generate())
    node.zones = StaticZones([bench_zone()])
    async with contextlib.AsyncExitStack() as stack:
        for feature in (DnsFeature(), PublicInterface(), TlsTcpFeature()):
            await feature.open(node, stack)
        assert node.addresses.public is not None and node.addresses.tls is not None
        print(parse_address(node.addresses.public)[1], flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await reader.read()  # until the parent closes stdin


# -- clients ----------------------------------------------------------------------------------


class _DoqClient(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._buffers: dict[int, bytearray] = {}

    async def query(self, framed: bytes) -> bytes:
        stream_id = self._quic.get_next_available_stream_id()
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[stream_id] = future
        self._quic.send_stream_data(stream_id, framed, end_stream=True)
        self.transmit()
        return await future

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            buffer = self._buffers.setdefault(event.stream_id, bytearray())
            buffer += event.data
            if event.end_stream:
                self._buffers.pop(event.stream_id)
                self._waiting.pop(event.stream_id).set_result(bytes(buffer))


def _insecure() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class DotClient:
    """One DoT connection; answers matched to queries by message ID."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
            message = await self.reader.readexactly(size)
            self.waiting.pop(int.from_bytes(message[:2], "big")).set_result(message)

    async def query(self, wire: bytes) -> bytes:
        self.next_id = (self.next_id + 1) % 65536
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        message = self.next_id.to_bytes(2, "big") + wire[2:]
        self.writer.write(len(message).to_bytes(2, "big") + message)
        return await future


class Doh2Client:
    """One HTTP/2 connection; POST /dns-query per query."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(1 << 24)
        writer.write(self.h2.data_to_send())
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived) and event.stream_id:
                    self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data or b"")
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id:
                    body = self.bodies.pop(event.stream_id, bytearray())
                    self.waiting.pop(event.stream_id).set_result(bytes(body))
            self.writer.write(self.h2.data_to_send())

    async def query(self, wire: bytes) -> bytes:
        stream_id = self.h2.get_next_available_stream_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[stream_id] = future
        headers = [
            (":method", "POST"),
            (":path", "/dns-query"),
            (":scheme", "https"),
            (":authority", "bench"),
            ("content-type", "application/dns-message"),
            ("content-length", str(len(wire))),
        ]
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, wire, end_stream=True)
        self.writer.write(self.h2.data_to_send())
        return await future


# -- rows -------------------------------------------------------------------------------------


async def run_row(ask: Ask, queries: int, in_flight: int, seconds: float) -> tuple[int, float]:
    """Ask ``queries`` times, ``in_flight`` at once, for at most ``seconds``: (answered, s)."""
    answered = 0
    deadline = time.monotonic() + seconds
    started = time.perf_counter()

    async def worker(share: int) -> None:
        nonlocal answered
        for _ in range(share):
            if time.monotonic() > deadline:
                return
            await ask()
            answered += 1

    shares = [
        queries // in_flight + (1 if n < queries % in_flight else 0) for n in range(in_flight)
    ]
    await asyncio.wait_for(asyncio.gather(*(worker(s) for s in shares)), seconds + 10)
    return answered, time.perf_counter() - started


async def measure(port: int, pid: int, queries: int, seconds: float) -> list[str]:
    wire = query_wire()
    framed = len(wire).to_bytes(2, "big") + wire
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["doq"])
    configuration.verify_mode = ssl.CERT_NONE
    rows = []
    async with connect(
        "127.0.0.1", port, configuration=configuration, create_protocol=_DoqClient
    ) as doq:
        assert isinstance(doq, _DoqClient)
        dot_context, h2_context = _insecure(), _insecure()
        dot_context.set_alpn_protocols(["dot"])
        h2_context.set_alpn_protocols(["h2"])
        dot = DotClient(*await asyncio.open_connection("127.0.0.1", port, ssl=dot_context))
        doh2 = Doh2Client(*await asyncio.open_connection("127.0.0.1", port, ssl=h2_context))
        asks: dict[str, Ask] = {
            "doq": lambda: doq.query(framed),
            "dot": lambda: dot.query(wire),
            "doh2": lambda: doh2.query(wire),
        }
        for ask in asks.values():  # warm: the connection, the engine's cache
            for _ in range(20):
                await ask()
        for in_flight in (1, 64):
            for name, ask in asks.items():
                before = cpu_seconds(pid)
                answered, elapsed = await run_row(ask, queries, in_flight, seconds)
                cpu = cpu_seconds(pid) - before
                rows.append(
                    f"| {name}-{in_flight} | {answered} | {answered / elapsed:,.0f} | "
                    f"{cpu / max(answered, 1) * 1e6:,.0f} |"
                )
        for client in (dot, doh2):
            client.task.cancel()
            client.writer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=2000, help="queries a row (2000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="at most, a row (60)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        with tempfile.TemporaryDirectory(prefix="hm-bench-") as folder:
            asyncio.run(serve(Path(folder)))
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        rows = asyncio.run(measure(port, server.pid, args.queries, args.seconds))
    finally:
        server.kill()
        server.wait(10)
    print(f"one node on 127.0.0.1, warm connections, {args.queries} queries a row")
    print("| row | answered | queries/s | server CPU µs/query |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
