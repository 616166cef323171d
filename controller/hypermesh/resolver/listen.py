"""The stub's sockets: DNS over UDP and over TCP (RFC 1035 §4.2, RFC 7766) on one address.

Bounded everywhere: UDP queries beyond ``Settings.max_inflight`` are dropped (the client asks
again); at most ``max_tcp`` TCP connections, each closed after ``tcp_idle`` seconds of silence,
each with at most ``tcp_pipeline`` queries answered at once (answers may go out of order, RFC
7766 §6.2.1.1), each message at most 65,535 bytes by its framing, a query longer than
``core.MAX_QUERY`` ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

from hypermesh.errors import HyperMeshError
from hypermesh.resolver.core import MAX_QUERY
from hypermesh.resolver.service import Resolver
from hypermesh.transport.address import format_address, parse_address
from hypermesh.transport.udp import tune_datagram_transport

log = logging.getLogger("hypermesh.resolver")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport
        tune_datagram_transport(transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        quick = self.resolver.quick(data, udp=True)
        if quick is not None and self.transport is not None:
            self.resolver.counts.udp += 1
            self.transport.sendto(quick, addr)
            return
        if self.resolver.busy:
            self.resolver.counts.dropped += 1
            return
        self.resolver.counts.udp += 1
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = await self.resolver.handle(data, udp=True)
        if answer is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on the resolver's socket", extra={"error": str(exc)})


@dataclass
class Listening:
    """The bound sockets; ``close`` stops them."""

    address: str
    """Where it listens, the port as bound (``host:port``)."""
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    protocol: _Udp
    connections: set[asyncio.Task[None]]

    async def close(self) -> None:
        self.udp.close()
        self.tcp.close()
        for task in (*self.connections, *self.protocol.tasks):
            task.cancel()
        await asyncio.gather(*self.connections, *self.protocol.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.tcp.wait_closed(), 2)


async def listen(resolver: Resolver) -> Listening:
    """Bind UDP and TCP on ``resolver.settings.listen`` (port 0: one free port for both);
    ``HyperMeshError`` saying why when the address cannot be had."""
    host, port = parse_address(resolver.settings.listen)
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    connections: set[asyncio.Task[None]] = set()
    for _ in range(20 if port == 0 else 1):
        try:
            udp, protocol = await loop.create_datagram_endpoint(
                lambda: _Udp(resolver), local_addr=(host, port), family=family
            )
        except OSError as exc:
            raise HyperMeshError(f"resolver: cannot listen on UDP {host}:{port}: {exc}") from exc
        bound = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(
                lambda r, w: _tcp_client(resolver, r, w, connections),
                host,
                bound,
                family=family,
                reuse_address=True,
            )
        except OSError as exc:
            udp.close()
            if port == 0:
                continue  # the TCP port of the same number is taken: another pair
            raise HyperMeshError(f"resolver: cannot listen on TCP {host}:{port}: {exc}") from exc
        return Listening(format_address(host, bound), udp, tcp, protocol, connections)
    raise HyperMeshError(f"resolver: no free port on {host} for both UDP and TCP")


async def _tcp_client(
    resolver: Resolver,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    connections: set[asyncio.Task[None]],
) -> None:
    settings = resolver.settings
    task = asyncio.current_task()
    if task is None or len(connections) >= settings.max_tcp:
        resolver.counts.dropped += 1
        writer.close()
        return
    connections.add(task)
    pending: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(settings.tcp_pipeline)
    lock = asyncio.Lock()
    try:
        while True:
            try:
                async with asyncio.timeout(settings.tcp_idle):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    if length < 12 or length > MAX_QUERY:
                        break  # not a query this stub reads: end the connection
                    data = await reader.readexactly(length)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                break
            resolver.counts.tcp += 1
            await slots.acquire()
            one = asyncio.create_task(_tcp_answer(resolver, data, writer, lock, slots))
            pending.add(one)
            one.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=settings.mesh_timeout + 3)
    finally:
        for one in pending:
            one.cancel()
        connections.discard(task)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1)


async def _tcp_answer(
    resolver: Resolver,
    data: bytes,
    writer: asyncio.StreamWriter,
    lock: asyncio.Lock,
    slots: asyncio.Semaphore,
) -> None:
    try:
        answer = await resolver.handle(data, udp=False)
        if answer is None or writer.is_closing():
            return
        async with lock:
            writer.write(struct.pack("!H", len(answer)) + answer)
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(resolver.settings.tcp_idle):
                    await writer.drain()
    finally:
        slots.release()
