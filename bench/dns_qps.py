"""DNS over QUIC and over HTTP/3 against the node's endpoint: queries per second, latency, and
the server's CPU per query, next to the floor of a stock aioquic server.

The server runs in a child process (``--serve``), the client here; each row prints queries per
second, the server's CPU time per query (from ``/proc/PID/stat``, the figure to design against:
the client is often the bottleneck), the datagrams the server sent per query, and for
one-at-a-time rows the median and 99th percentile round trip. Servers:

  node   the node's own endpoint (``bind_endpoint``, DoQ and DoH3) serving a generated zone
  floor  a minimal stock-aioquic DoQ server answering every query with one fixed response
  base   the node's endpoint from another checkout (``--base PATH``, e.g. a ``git worktree``
         of an earlier commit), to measure a change before and after in one run

  knot   Knot DNS (Debian's ``knotd``, one UDP worker) serving the same zone over plain UDP,
         for context: what a native server costs per query with no QUIC and no encryption

Rows: ``doq-1`` (one query at a time on a warm connection), ``doq-64`` (64 in flight on one
connection), ``doq-new`` (a new connection per query: the stub resolver's pattern, handshake
included), ``doh3-1`` and ``doh3-64`` (POST) and ``doh3-get`` (GET, one at a time; node only),
``udp-1`` and ``udp-64`` (Knot only). The client is this one Python process: on the faster
servers it is the bottleneck, which is why the server's CPU per query is the figure to read.

Run by hand, not by the tests::

    .venv/bin/python bench/dns_qps.py                    # every server, every row
    .venv/bin/python bench/dns_qps.py --queries 500 --servers node,knot
    git worktree add /tmp/base HEAD~1
    .venv/bin/python bench/dns_qps.py --servers floor,base,node --base /tmp/base --rows doq

The figures measured so far are in docs/benchmarks.md. Not yet: several client processes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.zone
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamDataReceived, StreamReset

from hypermesh.dns import DnsEngine, StaticZones
from hypermesh.node.router import Router
from hypermesh.node.routes import add_dns_routes
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity
from hypermesh.transport.udp import tune_datagram_transport

KNOTD = "/usr/sbin/knotd"
ZONE_RECORDS = 1000
QUERY_NAME = "host7.bench."
GOAL = 0.9
"""The node's server CPU per DoQ query as a fraction of the floor's (issue 19)."""


def bench_zone() -> dns.zone.Zone:
    lines = ["$TTL 300", "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 120", "@ IN NS ns1"]
    lines += ["ns1 IN A 192.0.2.1"]
    lines += [f"host{n} IN A 198.51.{n // 256 % 256}.{n % 256}" for n in range(ZONE_RECORDS)]
    return dns.zone.from_text("\n".join(lines) + "\n", origin="bench.", relativize=True)


def query_wire() -> bytes:
    query = dns.message.make_query(QUERY_NAME, "A")
    query.id = 0
    return query.to_wire()


# -- servers (in the child process) ---------------------------------------------------------


class _FloorProtocol(QuicConnectionProtocol):
    """Stock aioquic: one fixed answer per finished stream, no ACK tuning."""

    answer = b""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.end_stream:
            self._quic.send_stream_data(event.stream_id, self.answer, end_stream=True)


async def serve(mode: str) -> None:
    loop = asyncio.get_running_loop()
    identity = Identity.generate()
    if mode == "node":
        answerer = DnsEngine(StaticZones([bench_zone()]))
        endpoint = await bind_endpoint(
            "127.0.0.1",
            0,
            configuration=server_configuration(identity),
            router=add_dns_routes(Router(), answerer),
            dns_answer=answerer.answer,
        )
        transport: Any = endpoint.transport
    else:
        answer = DnsEngine(StaticZones([bench_zone()])).answer(query_wire())
        assert answer is not None
        _FloorProtocol.answer = len(answer).to_bytes(2, "big") + answer
        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=["doq"],
            certificate=self_signed_certificate(identity),
            private_key=identity.private_key,
        )
        transport, _ = await loop.create_datagram_endpoint(
            lambda: QuicServer(configuration=configuration, create_protocol=_FloorProtocol),
            local_addr=("127.0.0.1", 0),
        )
        tune_datagram_transport(transport)
    await answer_counts(transport)


def serve_profiled(mode: str, path: str) -> None:
    """``serve`` under cProfile (timed in CPU seconds), its statistics written to ``path`` at
    the end of stdin."""
    profile = cProfile.Profile(time.process_time)  # CPU time: a wait in a system call is not
    profile.enable()
    try:
        asyncio.run(serve(mode))
    finally:
        profile.disable()
        profile.dump_stats(path)


async def answer_counts(transport: Any) -> None:
    """Print the server's port, then, for each line read, the datagrams it has sent so far."""
    loop = asyncio.get_running_loop()
    sent = [0]
    original = transport.sendto

    def counting_sendto(data: bytes, addr: Any = None) -> None:
        sent[0] += 1
        original(data, addr)

    transport.sendto = counting_sendto
    print(transport.get_extra_info("sockname")[1], flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():  # each line asks: how many datagrams so far?
        print(sent[0], flush=True)


# -- the client -----------------------------------------------------------------------------


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
        elif isinstance(event, StreamReset) and event.stream_id in self._waiting:
            self._waiting.pop(event.stream_id).set_exception(RuntimeError("stream reset"))


def _doq_configuration() -> QuicConfiguration:
    return QuicConfiguration(is_client=True, alpn_protocols=["doq"], verify_mode=ssl.CERT_NONE)


class Server:
    """A ``--serve`` child process and its counters."""

    def __init__(self, mode: str, base: str | None = None, profile: str | None = None) -> None:
        self.mode = mode
        self.profile = profile
        script, env = __file__, None
        if mode == "base":  # the other checkout's code, its own bench script serving "node"
            if base is None:
                raise SystemExit("--servers base needs --base PATH (a checkout)")
            script = str(Path(base) / "bench" / "dns_qps.py")
            env = {**os.environ, "PYTHONPATH": str(Path(base) / "controller")}
        self.proc = subprocess.Popen(
            [
                *(sys.executable, script, "--serve", "node" if mode == "base" else mode),
                *(("--profile", f"{profile}/{mode}.prof") if profile else ()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def datagrams(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.profile and self.proc.stdin is not None:  # let it write its profile
            self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self.proc.kill()
        self.proc.wait()


class KnotServer:
    """``knotd`` from Debian serving ``bench_zone()`` on 127.0.0.1 over UDP, one UDP worker
    (a fair match for one Python process), from a configuration in a temporary folder."""

    def __init__(self) -> None:
        self.mode = "knot"
        self.folder = tempfile.TemporaryDirectory()
        folder = Path(self.folder.name)
        (folder / "bench.zone").write_text(bench_zone().to_text(relativize=False))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        (folder / "knot.conf").write_text(
            f"server:\n    rundir: {folder}\n    listen: 127.0.0.1@{self.port}\n"
            "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
            f"database:\n    storage: {folder}\n"
            "log:\n  - target: stderr\n    any: warning\n"
            f"zone:\n  - domain: bench.\n    storage: {folder}\n    file: bench.zone\n"
        )
        self.proc = subprocess.Popen(
            [KNOTD, "-c", str(folder / "knot.conf")], stderr=subprocess.DEVNULL
        )
        wire = query_wire()
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.settimeout(0.05)
                try:
                    probe.sendto(wire, ("127.0.0.1", self.port))
                    if probe.recv(4096):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        self.close()
        raise SystemExit("knotd did not answer on its port within 5 s")

    def datagrams(self) -> int:
        return 0  # one answer per query over UDP; not counted

    def cpu_seconds(self) -> float:
        return Server.cpu_seconds(self)  # type: ignore[arg-type]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.folder.cleanup()


class _UdpClient(asyncio.DatagramProtocol):
    """Plain DNS over UDP: answers matched to queries by message ID."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # asyncio's UDP transport is no DatagramTransport subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        future = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if future is not None and not future.done():
            future.set_result(data)

    async def query(self, wire: bytes) -> bytes:
        assert self.transport is not None
        self.next_id = (self.next_id + 1) % 65536
        future = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        self.transport.sendto(self.next_id.to_bytes(2, "big") + wire[2:])
        return await future


@dataclass
class Figures:
    """One row's figures from one repetition."""

    qps: float
    cpu_us: float
    datagrams: float | None
    p50_us: float | None = None
    p99_us: float | None = None


RESULTS: dict[tuple[str, str], list[Figures]] = {}
"""Every repetition of every row, by (server, row), in the order first measured."""
ONLY: set[str] = set()
"""The rows to measure (``--only``); empty: every row."""


async def measure(
    server: Server | KnotServer,
    label: str,
    count: int,
    one: Callable[[], Awaitable[None]],
    in_flight: int,
) -> None:
    if ONLY and label not in ONLY:
        return
    for _ in range(min(50, count)):  # warm up
        await one()
    await asyncio.sleep(0.05)
    datagrams, cpu, started = server.datagrams(), server.cpu_seconds(), time.perf_counter()
    latencies: list[float] = []
    if in_flight == 1:
        for _ in range(count):
            begin = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - begin)
    else:
        for _ in range(count // in_flight):
            await asyncio.gather(*(one() for _ in range(in_flight)))
        count = count // in_flight * in_flight
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.05)  # let the server's delayed ACKs go out and be counted
    cpu_used, sent = server.cpu_seconds() - cpu, server.datagrams() - datagrams
    figures = Figures(count / elapsed, 1e6 * cpu_used / count, sent / count if sent else None)
    if latencies:
        latencies.sort()
        figures.p50_us = 1e6 * statistics.median(latencies)
        figures.p99_us = 1e6 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    RESULTS.setdefault((server.mode, label), []).append(figures)


def report() -> None:
    """Each row's medians over the repetitions, the spread of its CPU per query, and the
    node's CPU per query against the floor's, row by row."""

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def show(value: float | None, width: int, digits: int = 0) -> str:
        return f"{value:{width}.{digits}f}" if value is not None else "-".rjust(width)

    print(
        f"{'server':6} {'row':8} {'q/s':>8}  {'CPU us/query (min-max)':>23}  {'dgrams/q':>8}"
        f"  {'p50 us':>7} {'p99 us':>7}"
    )
    for (mode, label), runs in RESULTS.items():
        cpu = [r.cpu_us for r in runs]
        print(
            f"{mode:6} {label:8} {show(median([r.qps for r in runs]), 8)}  "
            f"{show(median(cpu), 6)} ({min(cpu):5.0f}-{max(cpu):5.0f})".ljust(49)
            + f"  {show(median([r.datagrams for r in runs]), 8, 2)}"
            + f"  {show(median([r.p50_us for r in runs]), 7)}"
            + f" {show(median([r.p99_us for r in runs]), 7)}"
        )
    for mode in ("base", "node"):
        for label in ("doq-1", "doq-64", "doq-new"):
            node, floor = RESULTS.get((mode, label)), RESULTS.get(("floor", label))
            if node and floor:
                ratio = statistics.median(r.cpu_us for r in node) / statistics.median(
                    r.cpu_us for r in floor
                )
                verdict = "met" if ratio <= GOAL else "NOT met"
                print(
                    f"goal {mode} CPU/query <= {GOAL} x floor, {label}: "
                    f"{ratio:.2f} x the floor: {verdict}"
                )


async def run_udp_rows(server: KnotServer, queries: int) -> None:
    wire = query_wire()
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _UdpClient, remote_addr=("127.0.0.1", server.port)
    )
    try:

        async def udp() -> None:
            await asyncio.wait_for(client.query(wire), 2)

        await measure(server, "udp-1", queries, udp, 1)
        await measure(server, "udp-64", queries * 4, udp, 64)
    finally:
        transport.close()


async def run_rows(server: Server, queries: int, rows: str, new_queries: int) -> None:
    wire = query_wire()
    framed = len(wire).to_bytes(2, "big") + wire
    async with connect(
        "127.0.0.1", server.port, configuration=_doq_configuration(), create_protocol=_DoqClient
    ) as client:
        assert isinstance(client, _DoqClient)

        async def doq_warm() -> None:
            await client.query(framed)

        await measure(server, "doq-1", queries, doq_warm, 1)
        await measure(server, "doq-64", queries * 4, doq_warm, 64)

    async def doq_new() -> None:
        loop = asyncio.get_running_loop()
        quic = QuicConnection(configuration=_doq_configuration())
        transport, fresh = await loop.create_datagram_endpoint(
            lambda: _DoqClient(quic), local_addr=("127.0.0.1", 0)
        )
        try:
            fresh.connect(("127.0.0.1", server.port))
            await fresh.wait_connected()
            await fresh.query(framed)
        finally:
            fresh.close()  # CONNECTION_CLOSE at once; no waiting for the drain
            transport.close()

    await measure(server, "doq-new", new_queries or max(20, queries // 10), doq_new, 1)
    if server.mode == "floor" or rows == "doq":
        return
    address = f"127.0.0.1:{server.port}"
    async with connect_h3(address, expected_id=None, identity=None) as h3:
        headers = [("content-type", "application/dns-message")]

        async def doh3() -> None:
            status, _, _ = await h3.request("POST", "/dns-query", headers=headers, body=wire)
            assert status == 200

        get_path = "/dns-query?dns=" + base64.urlsafe_b64encode(wire).rstrip(b"=").decode()

        async def doh3_get() -> None:
            status, _, _ = await h3.request("GET", get_path)
            assert status == 200

        await measure(server, "doh3-1", queries, doh3, 1)
        await measure(server, "doh3-64", queries * 4, doh3, 64)
        await measure(server, "doh3-get", queries, doh3_get, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=["node", "floor"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile", help="a folder: each server writes its cProfile statistics there (MODE.prof)"
    )
    parser.add_argument("--only", default="", help="comma-separated rows to measure (doq-1...)")
    parser.add_argument(
        "--servers", default="floor,node,knot", help="comma-separated: floor,node,knot,base"
    )
    parser.add_argument("--base", help="a checkout whose node is served as 'base'")
    parser.add_argument(
        "--rows", choices=["all", "doq"], default="all", help="doq: the DoQ rows only"
    )
    parser.add_argument(
        "--new-queries", type=int, default=0, help="connections for doq-new (queries / 10)"
    )
    parser.add_argument("--queries", type=int, default=2000, help="queries per one-at-a-time row")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds over every server; medians are printed"
    )
    args = parser.parse_args()
    if args.serve:
        if args.profile:
            serve_profiled(args.serve, args.profile)
        else:
            asyncio.run(serve(args.serve))
        return 0
    ONLY.update(row for row in args.only.split(",") if row)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    servers: list[Server | KnotServer] = []
    try:
        for mode in args.servers.split(","):
            if mode != "knot":
                servers.append(Server(mode, args.base, args.profile))
            elif os.path.exists(KNOTD):
                servers.append(KnotServer())
            else:
                print(f"knot   skipped: {KNOTD} is not installed (apt-get install knot)")
        for round_ in range(args.repeat):
            print(f"round {round_ + 1} of {args.repeat}", file=sys.stderr, flush=True)
            for server in servers:  # the servers take turns, so drift hits each alike
                if isinstance(server, KnotServer):
                    asyncio.run(run_udp_rows(server, args.queries))
                else:
                    asyncio.run(run_rows(server, args.queries, args.rows, args.new_queries))
    finally:
        for server in servers:
            server.close()
    report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
