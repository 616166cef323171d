"""DNS over QUIC from worker processes sharing one UDP port (``SO_REUSEPORT``), for a node with
more cores than its one event loop can use (``dns_workers`` in the node's config).

The node (the parent) binds ``count`` UDP sockets on the same address, each with
``SO_REUSEPORT``, and hands one to each worker process (``python -m hypermesh.node.dns_worker``),
with one end of a socket pair it keeps the other end of. The kernel spreads the datagrams over
the sockets by the hash of their 4-tuple, so each client address stays with one worker and
its QUIC connections with it; a client that moves to another source port (QUIC connection
migration, a NAT rebinding) hashes elsewhere and its connection is lost there (it connects
again). Each worker runs the node's QUIC endpoint (``NodeProtocol``) offering ALPN ``doq``
only, answering from its own copy of the node's zones.

The parent keeps writing the zones; the workers only read them. Over the socket pair the
parent sends, in frames of a 4-byte length, a 1-byte kind and a payload:

- ``K``: the node's private key (raw Ed25519 bytes; the worker presents the node's own
  self-signed certificate, so clients pinning the node's key accept it) and ``L`` its
  endpoint limits (JSON);
- ``Z``: a zone (pickled ``dns.zone.Zone``: eight times faster to read than its text), sent
  again whenever it is replaced or edited; ``R``: a zone removed (its origin); ``S``: the
  stale origins, newline-separated;
- ``G``: go, once the first zones are sent: the worker starts reading its UDP socket then
  (datagrams that came before wait in the socket's buffer).

The worker answers ``V`` (ready, with its pid) once it serves, then ``Q`` with how many
queries it has answered, at most every ``REPORT_EVERY`` seconds and only after queries (an
idle worker sends nothing and arms no timer). A worker exits when the parent dies (it asks
the kernel for ``SIGKILL`` then: ``PR_SET_PDEATHSIG``) or closes its end of the pair.

Workers apply no gate and have no fallback: they answer from the zones the node holds, as the
public interface does with no public ``InterfacePolicy``; a query for a name outside them is
answered REFUSED, not forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import dns.name
import dns.zone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.source import StaticZones
from hypermesh.transport.address import format_address, parse_address
from hypermesh.transport.identity import Identity

log = logging.getLogger(__name__)

MAX_WORKERS = 64
"""The most worker processes a node may ask for."""
REPORT_EVERY = 0.5
"""Seconds between a worker's reports of its query count, while it answers queries."""
START_TIMEOUT = 30.0
"""Seconds the parent waits for every worker to say it serves."""
STOP_TIMEOUT = 5.0
"""Seconds a worker has to exit once its control socket is closed, before SIGKILL."""
PR_SET_PDEATHSIG = 1

KEY, LIMITS, ZONE, REMOVED, STALE, GO = b"K", b"L", b"Z", b"R", b"S", b"G"
READY, QUERIES = b"V", b"Q"


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One control message: its length (kind included), its kind, its payload."""
    return (len(payload) + 1).to_bytes(4, "big") + kind + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next control message as (kind, payload); ``IncompleteReadError`` at the end."""
    length = int.from_bytes(await reader.readexactly(4), "big")
    body = await reader.readexactly(length)
    return body[:1], body[1:]


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` UDP sockets bound to ``host:port`` with ``SO_REUSEPORT`` (port 0: the first
    takes any free port, the others the same). ``OSError`` when one cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


# -- the parent's side -----------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    reader: asyncio.StreamReader
    queries: int = 0
    ready: asyncio.Future[None] | None = None
    task: asyncio.Task[None] | None = None


class DnsWorkers:
    """``count`` worker processes (``python -m MODULE``) answering DNS over QUIC on
    ``listen`` from ``zones``."""

    def __init__(
        self,
        zones: StaticZones,
        identity: Identity,
        listen: str,
        count: int,
        limits: Mapping[str, object] | None = None,
        *,
        module: str,
    ) -> None:
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError(f"dns_workers must be 1 to {MAX_WORKERS}")
        self._zones = zones
        self._identity = identity
        self._host, self._port = parse_address(listen)
        self._count = count
        self._limits = dict(limits or {})
        self._module = module
        """The worker's program, run as ``python -m MODULE`` (its ``__main__`` calls
        ``worker_main``)."""
        self._workers: list[_Worker] = []
        self._sent: dict[dns.name.Name, tuple[dns.zone.Zone, int]] = {}
        self._stale: frozenset[dns.name.Name] = frozenset()
        self._sync_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.address = ""
        """Where the workers listen, ``host:port`` with the real port, once started."""

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def queries(self) -> dict[int, int]:
        """Queries each worker (by pid) has reported answering."""
        return {worker.process.pid: worker.queries for worker in self._workers}

    async def start(self) -> None:
        """Bind the sockets, start the workers, send them the zones; return once every worker
        serves. ``OSError`` when the address cannot be bound, ``RuntimeError`` when a worker
        does not start."""
        self._loop = asyncio.get_running_loop()
        sockets = reuseport_sockets(self._host, self._port, self._count)
        self._port = sockets[0].getsockname()[1]
        self.address = format_address(self._host, self._port)
        try:
            for udp in sockets:
                self._workers.append(await self._spawn(udp))
            self._zones.watch(self._changed)  # every worker is there: what changes from now on
            self._send_zones()
            for worker in self._workers:
                worker.writer.write(frame(GO))
            async with asyncio.timeout(START_TIMEOUT):
                for worker in self._workers:
                    assert worker.ready is not None
                    await worker.ready
        except (TimeoutError, RuntimeError) as exc:
            await self.close()
            raise RuntimeError(f"DNS workers did not start: {exc or 'timed out'}") from None
        except BaseException:  # OSError starting one, or cancelled: none is left behind
            await self.close()
            raise
        finally:
            for udp in sockets:
                udp.close()  # each worker holds its own copy now

    async def _spawn(self, udp: socket.socket) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", self._module, str(os.getpid())),
                *(str(udp.fileno()), str(theirs.fileno())),
                pass_fds=(udp.fileno(), theirs.fileno()),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        raw = self._identity.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        writer.write(frame(KEY, raw) + frame(LIMITS, json.dumps(self._limits).encode()))
        worker = _Worker(process, writer, reader, ready=asyncio.get_running_loop().create_future())
        worker.task = asyncio.create_task(self._listen(worker))
        return worker

    async def _listen(self, worker: _Worker) -> None:
        """Read what ``worker`` reports until it goes."""
        try:
            while True:
                kind, payload = await read_frame(worker.reader)
                if kind == QUERIES:
                    worker.queries = int(payload)
                elif kind == READY and worker.ready is not None and not worker.ready.done():
                    worker.ready.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_exception(RuntimeError(f"worker {worker.process.pid} exited"))
        elif worker in self._workers:
            log.error("DNS worker exited", extra={"pid": worker.process.pid})

    def _changed(self) -> None:
        """The zones changed: send the workers what did, once this turn of the loop is over
        (a replace of many zones is one sync)."""
        if not self._sync_pending and self._loop is not None:
            self._sync_pending = True
            self._loop.call_soon_threadsafe(self._send_zones)  # from any thread

    def _send_zones(self) -> None:
        self._sync_pending = False
        zones, edits = self._zones.zones(), self._zones.edits
        out = bytearray()
        for origin in self._sent.keys() - zones.keys():
            del self._sent[origin]
            out += frame(REMOVED, origin.to_text().encode())
        for origin, zone in zones.items():
            if self._sent.get(origin) != (zone, edits):
                self._sent[origin] = (zone, edits)
                out += frame(ZONE, pickle.dumps(zone, pickle.HIGHEST_PROTOCOL))
        if self._zones.stale != self._stale:
            self._stale = self._zones.stale
            out += frame(STALE, "\n".join(n.to_text() for n in self._stale).encode())
        if out:
            for worker in self._workers:
                worker.writer.write(out)

    async def close(self) -> None:
        """Stop every worker: its control socket closed, it exits (SIGKILL past
        ``STOP_TIMEOUT``)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.writer.close()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            if worker.task is not None:
                worker.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.task


class WorkerQueries(Collector):
    """``hypermesh_dns_worker_queries_total{pid}``: the queries each DNS worker reported,
    read at each scrape."""

    def __init__(self, workers: DnsWorkers) -> None:
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hypermesh_dns_worker_queries",
            "DNS over QUIC queries answered by each DNS worker process (dns_workers).",
            labels=["pid"],
        )
        for pid, count in self.workers.queries().items():
            family.add_metric([str(pid)], count)
        yield family


# -- the worker's side -----------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent goes; exit if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


class _Counter:
    """The worker's answers, counted and reported to the parent after queries."""

    def __init__(self, engine: DnsEngine, writer: asyncio.StreamWriter) -> None:
        self.engine = engine
        self.writer = writer
        self.count = 0
        self.pending = False

    def answer(self, query: bytes) -> bytes | None:
        self.count += 1
        if not self.pending:
            self.pending = True
            asyncio.get_running_loop().call_later(REPORT_EVERY, self.report)
        return self.engine.answer(query)

    def report(self) -> None:
        self.pending = False
        if not self.writer.is_closing():
            self.writer.write(frame(QUERIES, str(self.count).encode()))


def _apply(zones: StaticZones, kind: bytes, payload: bytes) -> None:
    """One zone message from the parent."""
    if kind == ZONE:
        zone = pickle.loads(payload)  # noqa: S301 - from the parent, over our own socket pair
        zones.set(zone)  # a new zone object: the engine indexes it afresh
    elif kind == REMOVED:
        zones.remove(payload.decode())
    elif kind == STALE:
        text = payload.decode()
        zones.set_stale(dns.name.from_text(n) for n in text.split("\n") if n)


OpenEndpoint = Callable[
    [Identity, Mapping[str, Any], Callable[[bytes], bytes | None], socket.socket],
    Awaitable[Callable[[], None]],
]
"""``(identity, limits, answer, sock)``: serve DNS over QUIC on ``sock`` presenting
``identity``, under the endpoint ``limits``, answering through ``answer``; returns what closes
it (the node's endpoint: ``hypermesh.node.dns_worker``)."""


async def _serve(udp: socket.socket, control: socket.socket, open_endpoint: OpenEndpoint) -> None:
    reader, writer = await asyncio.open_connection(sock=control)
    zones = StaticZones()
    settings: dict[bytes, bytes] = {}
    while (kind := (await read_frame(reader)))[0] != GO:
        if kind[0] in (KEY, LIMITS):
            settings[kind[0]] = kind[1]
        else:
            _apply(zones, *kind)
    identity = Identity(Ed25519PrivateKey.from_private_bytes(settings.pop(KEY)))
    counter = _Counter(DnsEngine(zones), writer)
    limits = json.loads(settings.get(LIMITS, b"{}"))
    close = await open_endpoint(identity, limits, counter.answer, udp)
    writer.write(frame(READY, str(os.getpid()).encode()))
    try:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                _apply(zones, *await read_frame(reader))
    finally:
        close()


def worker_main(open_endpoint: OpenEndpoint, argv: Iterable[str] | None = None) -> int:
    """A worker process's life (the worker module's ``__main__``): its arguments are the
    parent's pid, its UDP socket's descriptor and its control socket's."""
    parser = argparse.ArgumentParser(description="A node's DNS-over-QUIC worker (internal).")
    parser.add_argument("parent", type=int)
    parser.add_argument("udp_fd", type=int)
    parser.add_argument("control_fd", type=int)
    args = parser.parse_args(list(argv) if argv is not None else None)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node decides; a ^C reaches it too
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    udp = socket.socket(fileno=args.udp_fd)
    control = socket.socket(fileno=args.control_fd)
    asyncio.run(_serve(udp, control, open_endpoint))
    return 0
