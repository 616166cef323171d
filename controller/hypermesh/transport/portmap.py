"""Port mapping with NAT-PMP (RFC 6886): asking the home router to forward the node's UDP port
to it from anyone, so a node behind a NAT that filters (port-restricted, symmetric) is dialled
directly at the mapped address by every other node.

The codec is pure (bytes in, values out; every field checked, result codes named); the client
(``NatPmpClient``) is the only I/O. Layouts (network byte order; RFC 6886 §3.2, §3.3):

- external address request: version 0, opcode 0 (2 bytes); its response: version 0, opcode
  128, result code (16 bits), seconds since the gateway's epoch (32), external IPv4 address (4
  bytes): 12 bytes;
- mapping request: version 0, opcode 1 (UDP) or 2 (TCP), reserved 0 (16 bits), internal port
  (16), suggested external port (16), requested lifetime in seconds (32): 12 bytes; its
  response: version 0, opcode 128 + the request's, result code, epoch, internal port, mapped
  external port, granted lifetime: 16 bytes. A lifetime of 0 (with external port 0) deletes.

A response whose result code is not 0 may stop after the epoch (8 bytes, §3.5).

The gateway maps the *internal port named in the request* for the request's source *address*
(§3.3: "the internal port on the client's side"; the request's source port is not used), so
the client asks from a small socket of its own, bound to the node's address, and the mapping
leads to the node's one UDP socket. Requests are sent to the default gateway (from
``/proc/net/route``) on port 5351, again after 250 ms, then doubling (§3.1; bounded here to
about 2 s: most networks have no NAT-PMP, and a node then goes on without a mapping). A held
mapping is renewed at half its granted lifetime and deleted on close; a gateway whose epoch
went backwards (§3.6: it restarted and lost its mappings) is asked again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypermesh.errors import HyperMeshError
from hypermesh.transport.address import format_address

log = logging.getLogger("hypermesh.portmap")

VERSION = 0
SERVER_PORT = 5351
"""Where a NAT-PMP gateway listens (RFC 6886 §3)."""
OP_EXTERNAL = 0
OP_MAP_UDP = 1
OP_MAP_TCP = 2
RESPONSE = 128
"""A response's opcode is its request's plus 128."""
LIFETIME = 7200
"""Seconds a mapping is asked for (RFC 6886 §3.3 recommends 7200)."""
RETRIES = (0.25, 0.5, 1.0)
"""Seconds to wait for an answer after each send (RFC 6886 §3.1's 250 ms, doubling), bounded:
after 1.75 s without an answer, nobody speaks NAT-PMP here."""
CHECK_EVERY = 60.0
"""Seconds between looks at the gateway's epoch and external address while a mapping is held."""
RETRY_AFTER = 300.0
"""Seconds before asking again after the gateway refused or failed (it did answer)."""
MAX_MESSAGE = 1100
"""The largest datagram read (PCP's bound; a NAT-PMP message is at most 16 bytes)."""

UNSPECIFIED = str(ipaddress.IPv4Address(0))
"""``0.0.0.0``: no external address (an error's), or any local address (where to send from)."""

PROTOCOLS = {"udp": OP_MAP_UDP, "tcp": OP_MAP_TCP}
_BY_OPCODE = {v: k for k, v in PROTOCOLS.items()}


class Result(enum.IntEnum):
    """NAT-PMP result codes (RFC 6886 §3.5)."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    """Refused: the gateway supports mappings but they are turned off, or not for this client."""
    NETWORK_FAILURE = 3
    """The gateway has no external address (not connected, or not a public one)."""
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class PortMapError(HyperMeshError):
    """A port mapping could not be had (the gateway said why, or nothing answered)."""


class BadMessage(PortMapError):
    """Bytes that are not a NAT-PMP message this side understands (the peer's mistake)."""


class NoGateway(PortMapError):
    """Nothing answered NAT-PMP at the gateway: the network offers no port mapping."""


class Refused(PortMapError):
    """The gateway answered with a result code other than success."""

    def __init__(self, result: Result) -> None:
        super().__init__(f"the gateway refused: {result.name.lower().replace('_', ' ')}")
        self.result = result


# -- the codec (pure) --------------------------------------------------------------------------


def _port(value: int, what: str, *, zero: bool = False) -> int:
    if not (0 if zero else 1) <= value <= 0xFFFF:
        raise ValueError(f"{what}: a port number, {0 if zero else 1}..65535 (got {value})")
    return value


def _result(raw: int) -> Result:
    try:
        return Result(raw)
    except ValueError:
        raise BadMessage(f"unknown NAT-PMP result code {raw}") from None


@dataclass(frozen=True, slots=True)
class ExternalAddressRequest:
    """Opcode 0: what is the gateway's external address?"""

    def to_wire(self) -> bytes:
        return bytes((VERSION, OP_EXTERNAL))


@dataclass(frozen=True, slots=True)
class MapRequest:
    """Opcode 1 or 2: map ``internal_port`` (of the sender's address) for ``lifetime`` seconds,
    preferably at ``external_port``; a lifetime of 0 deletes the mapping."""

    protocol: str
    internal_port: int
    external_port: int
    lifetime: int

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: udp or tcp (got {self.protocol!r})")
        _port(self.internal_port, "internal port")
        _port(self.external_port, "external port", zero=True)
        if not 0 <= self.lifetime <= 0xFFFFFFFF:
            raise ValueError(f"lifetime: 0..{0xFFFFFFFF} seconds (got {self.lifetime})")

    def to_wire(self) -> bytes:
        return struct.pack(
            "!BBHHHI",
            VERSION,
            PROTOCOLS[self.protocol],
            0,
            self.internal_port,
            self.external_port,
            self.lifetime,
        )


@dataclass(frozen=True, slots=True)
class ExternalAddressResponse:
    """The answer to opcode 0: ``address`` is ``0.0.0.0`` unless ``result`` is success."""

    result: Result
    epoch: int
    address: str = UNSPECIFIED

    def to_wire(self) -> bytes:
        return struct.pack(
            "!BBHI4s",
            VERSION,
            RESPONSE + OP_EXTERNAL,
            self.result,
            self.epoch,
            ipaddress.IPv4Address(self.address).packed,
        )


@dataclass(frozen=True, slots=True)
class MapResponse:
    """The answer to a mapping request: the external port and lifetime the gateway granted."""

    protocol: str
    result: Result
    epoch: int
    internal_port: int = 0
    external_port: int = 0
    lifetime: int = 0

    def to_wire(self) -> bytes:
        return struct.pack(
            "!BBHIHHI",
            VERSION,
            RESPONSE + PROTOCOLS[self.protocol],
            self.result,
            self.epoch,
            self.internal_port,
            self.external_port,
            self.lifetime,
        )


Request = ExternalAddressRequest | MapRequest
Response = ExternalAddressResponse | MapResponse


def _opcode(message: Response) -> int:
    if isinstance(message, ExternalAddressResponse):
        return RESPONSE + OP_EXTERNAL
    return RESPONSE + PROTOCOLS[message.protocol]


def parse_request(data: bytes) -> Request:
    """A request from its bytes (a gateway's side; tests); ``BadMessage`` saying why not."""
    if len(data) < 2:
        raise BadMessage(f"a NAT-PMP request has at least 2 bytes (got {len(data)})")
    version, opcode = data[0], data[1]
    if version != VERSION:
        raise BadMessage(f"NAT-PMP version {version}, not {VERSION}")
    if opcode == OP_EXTERNAL:
        if len(data) != 2:
            raise BadMessage(f"an external address request has 2 bytes (got {len(data)})")
        return ExternalAddressRequest()
    if opcode not in _BY_OPCODE:
        raise BadMessage(f"unknown NAT-PMP request opcode {opcode}")
    if len(data) != 12:
        raise BadMessage(f"a mapping request has 12 bytes (got {len(data)})")
    _, _, _, internal, external, lifetime = struct.unpack("!BBHHHI", data)
    try:
        return MapRequest(_BY_OPCODE[opcode], internal, external, lifetime)
    except ValueError as exc:
        raise BadMessage(str(exc)) from None


def parse_response(data: bytes) -> Response:
    """A response from its bytes; ``BadMessage`` saying why not (wrong version, a request's
    opcode, a short packet, an unknown result code)."""
    if len(data) < 8:
        raise BadMessage(f"a NAT-PMP response has at least 8 bytes (got {len(data)})")
    version, opcode, raw, epoch = struct.unpack_from("!BBHI", data)
    if version != VERSION:
        raise BadMessage(f"NAT-PMP version {version}, not {VERSION}")
    if opcode < RESPONSE:
        raise BadMessage(f"opcode {opcode} is a request, not a response")
    kind = opcode - RESPONSE
    result = _result(raw)
    if kind != OP_EXTERNAL and kind not in _BY_OPCODE:
        raise BadMessage(f"unknown NAT-PMP response opcode {opcode}")
    if result is not Result.SUCCESS and len(data) == 8:
        if kind == OP_EXTERNAL:
            return ExternalAddressResponse(result, epoch)
        return MapResponse(_BY_OPCODE[kind], result, epoch)
    if kind == OP_EXTERNAL:
        if len(data) != 12:
            raise BadMessage(f"an external address response has 12 bytes (got {len(data)})")
        address = str(ipaddress.IPv4Address(data[8:12]))
        return ExternalAddressResponse(result, epoch, address)
    if len(data) != 16:
        raise BadMessage(f"a mapping response has 16 bytes (got {len(data)})")
    internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
    return MapResponse(_BY_OPCODE[kind], result, epoch, internal, external, lifetime)


def restarted(old_epoch: int, old_at: float, new_epoch: int, new_at: float) -> bool:
    """Whether a gateway's epoch says it restarted (and lost its mappings) between two answers
    received at ``old_at`` and ``new_at`` (seconds, the client's clock): RFC 6886 §3.6, the
    epoch went back, or advanced less than 7/8 of the client's time less 2 s."""
    if new_epoch < old_epoch:
        return True
    client = new_at - old_at
    return new_epoch - old_epoch < client - client / 8 - 2


def default_gateway(route_table: str) -> str | None:
    """The IPv4 default gateway in the text of ``/proc/net/route`` (the lowest metric), or
    None when there is none."""
    best: tuple[int, str] | None = None
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 7:
            continue
        try:
            destination, gateway = int(fields[1], 16), int(fields[2], 16)
            flags, metric = int(fields[3], 16), int(fields[6])
        except ValueError:
            continue
        if destination != 0 or not flags & 0x2 or gateway == 0:  # RTF_GATEWAY
            continue
        address = str(ipaddress.IPv4Address(gateway.to_bytes(4, "little")))
        if best is None or metric < best[0]:
            best = (metric, address)
    return None if best is None else best[1]


def find_gateway(path: Path = Path("/proc/net/route")) -> str | None:
    """This host's IPv4 default gateway (None without one, or off Linux)."""
    try:
        return default_gateway(path.read_text())
    except OSError:
        return None


# -- the client (I/O) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A mapping the gateway granted: ``address`` (``external:port``) leads to the node's
    ``internal_port`` from anyone, until ``expires`` (the client's monotonic clock)."""

    protocol: str
    """The mapping protocol: ``nat-pmp``."""
    gateway: str
    external: str
    external_port: int
    internal_port: int
    lifetime: int
    epoch: int
    expires: float

    @property
    def address(self) -> str:
        return format_address(self.external, self.external_port)


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data[:MAX_MESSAGE])


OnChange = Callable[[PortMapping | None], None]


class NatPmpClient:
    """Holds a NAT-PMP mapping of ``internal_port`` (UDP) at ``gateway`` while ``run`` runs:
    asks, renews at half the lifetime, asks again when the gateway restarted or changed its
    external address, and calls ``on_change`` with the mapping (or None when it is lost).
    ``run`` returns quietly when nothing answers; ``aclose`` deletes the mapping."""

    def __init__(
        self,
        internal_port: int,
        *,
        gateway: str | None = None,
        bind: str = UNSPECIFIED,
        lifetime: int = LIFETIME,
        retries: Sequence[float] = RETRIES,
        check_every: float = CHECK_EVERY,
        server_port: int = SERVER_PORT,
        on_change: OnChange | None = None,
    ) -> None:
        self.internal_port = _port(internal_port, "internal port")
        self.gateway = gateway
        self.bind = bind
        self.lifetime = lifetime
        self.retries = tuple(retries)
        self.check_every = check_every
        self.server_port = server_port
        self.on_change = on_change or (lambda _mapping: None)
        self.mapping: PortMapping | None = None
        self.last_error: str | None = None
        self._epoch: tuple[int, float] | None = None
        self._restarted = False
        """Set when an answer's epoch says the gateway restarted (RFC 6886 §3.6)."""
        self._transport: asyncio.DatagramTransport | None = None
        self._answers: _Answers | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> tuple[asyncio.DatagramTransport, _Answers]:
        if self._transport is None or self._answers is None or self._transport.is_closing():
            if self.gateway is None:
                self.gateway = find_gateway()
            if self.gateway is None:
                raise NoGateway("this host has no IPv4 default gateway to ask")
            loop = asyncio.get_running_loop()
            transport, answers = await loop.create_datagram_endpoint(
                _Answers,
                local_addr=(self.bind, 0),
                remote_addr=(self.gateway, self.server_port),  # answers from elsewhere: dropped
                family=socket.AF_INET,
            )
            self._transport, self._answers = transport, answers
        return self._transport, self._answers

    async def exchange(self, request: Request) -> Response:
        """Send ``request`` and wait for its response, sending again on RFC 6886's schedule;
        ``NoGateway`` when nothing answers, ``Refused`` when the answer is not a success."""
        async with self._lock:
            transport, answers = await self._open()
            while not answers.queue.empty():
                answers.queue.get_nowait()  # late answers to an earlier exchange
            wire = request.to_wire()
            expected = RESPONSE + (
                OP_EXTERNAL if isinstance(request, ExternalAddressRequest) else wire[1]
            )
            for wait in self.retries:
                transport.sendto(wire)
                deadline = asyncio.get_running_loop().time() + wait
                while (left := deadline - asyncio.get_running_loop().time()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            data = await answers.queue.get()
                    except TimeoutError:
                        break
                    try:
                        response = parse_response(data)
                    except BadMessage as exc:
                        log.debug("not a NAT-PMP answer", extra={"error": str(exc)})
                        continue
                    if _opcode(response) != expected:
                        continue  # a late answer to another request
                    self._note_epoch(response.epoch)
                    if response.result is not Result.SUCCESS:
                        raise Refused(response.result)
                    return response
        raise NoGateway(f"no NAT-PMP answer from {self.gateway} in {sum(self.retries):g}s")

    def _note_epoch(self, epoch: int) -> None:
        now = time.monotonic()
        if self._epoch is not None and restarted(*self._epoch, epoch, now):
            self._restarted = True
        self._epoch = (epoch, now)

    async def external_address(self) -> str:
        response = await self.exchange(ExternalAddressRequest())
        assert isinstance(response, ExternalAddressResponse)
        return response.address

    async def map(self, lifetime: int | None = None) -> PortMapping:
        """Ask for (or renew) the mapping; the gateway's external address is asked first."""
        external = await self.external_address()
        asked = self.lifetime if lifetime is None else lifetime
        suggested = self.mapping.external_port if self.mapping else self.internal_port
        response = await self.exchange(MapRequest("udp", self.internal_port, suggested, asked))
        assert isinstance(response, MapResponse)
        if response.internal_port != self.internal_port or response.external_port == 0:
            raise BadMessage(
                f"the gateway mapped port {response.internal_port} to {response.external_port}"
                f", not {self.internal_port}"
            )
        assert self.gateway is not None
        return PortMapping(
            protocol="nat-pmp",
            gateway=self.gateway,
            external=external,
            external_port=response.external_port,
            internal_port=self.internal_port,
            lifetime=response.lifetime,
            epoch=response.epoch,
            expires=time.monotonic() + response.lifetime,
        )

    def _set(self, mapping: PortMapping | None) -> None:
        changed = (mapping is None) != (self.mapping is None) or (
            mapping is not None
            and self.mapping is not None
            and mapping.address != self.mapping.address
        )
        self.mapping = mapping
        if changed:
            log.info(
                "port mapping " + ("held" if mapping else "lost"),
                extra={"mapped": mapping.address if mapping else None, "gateway": self.gateway},
            )
            self.on_change(mapping)

    async def run(self) -> None:
        """Hold the mapping until cancelled; return when nothing answers NAT-PMP at all."""
        self._restarted = False
        while True:
            try:
                self._set(await self.map())
                self.last_error = None
            except NoGateway as exc:
                self.last_error = str(exc)
                self._set(None)
                if self._epoch is None:
                    log.debug("no port mapping here", extra={"error": str(exc)})
                    return  # never answered: no NAT-PMP on this network
                await asyncio.sleep(self.check_every)
                continue
            except PortMapError as exc:
                self.last_error = str(exc)
                self._set(None)
                log.info("no port mapping", extra={"error": str(exc), "gateway": self.gateway})
                await asyncio.sleep(RETRY_AFTER)
                continue
            await self._hold()

    async def _hold(self) -> None:
        """Until the mapping must be asked for again: half its lifetime, a restarted gateway,
        a new external address, or a gateway that stopped answering."""
        assert self.mapping is not None
        renew_at = time.monotonic() + self.mapping.lifetime / 2
        self._restarted = False
        while (left := renew_at - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self.check_every))
            if time.monotonic() >= renew_at:
                return
            try:
                external = await self.external_address()
            except PortMapError:
                return
            if self._restarted or external != self.mapping.external:
                log.info("the gateway restarted or changed address: mapping again")
                return

    async def aclose(self) -> None:
        """Delete the mapping (one bounded exchange), close the socket."""
        held, self.mapping = self.mapping, None
        try:
            if held is not None:
                with contextlib.suppress(PortMapError, OSError):
                    await self.exchange(MapRequest("udp", self.internal_port, 0, 0))
                self.on_change(None)
        finally:
            if self._transport is not None:
                self._transport.close()
                self._transport = None
