"""The lab's NAT-PMP server (RFC 6886): what a home router's port mapping is, in a router
namespace of the lab, as its NAT is the nftables rules the lab writes (``tests/lab/nat.py``).

Run inside a router's namespace (``tests.lab.nat.add_portmap`` does it)::

    python -m tests.lab.natpmp_router --listen 198.18.101.1 --lan 198.18.101.0/30 \\
        --external 198.18.55.6 --log /tmp/router/natpmp.log

It answers on ``--listen`` (the router's ``lan0`` address), UDP port 5351, requests from
``--lan`` only (others: *not authorised*):

- opcode 0: the external address, ``--external`` (the router's outside address);
- opcodes 1 and 2: map a UDP or TCP port of the *asking address* (the internal port named in
  the request; RFC 6886 §3.3) for the granted lifetime, capped at ``MAX_LIFETIME``. The
  suggested external port is granted when free (and at least 1024), else the internal port,
  else the lowest free one. Asked again by the same host for the same internal port, the
  mapping is renewed at the same external port. A lifetime of 0 deletes it (internal port 0:
  every mapping of that host and protocol); deleting what is not held succeeds too (§3.4).
  At most ``MAX_MAPPINGS``: beyond, *out of resources*;
- the epoch is the seconds since the server started (§3.6);
- a version other than 0: *unsupported version*; another opcode below 128: *unsupported
  opcode* (both 8 bytes: version, opcode + 128, result, epoch); a response (opcode 128 and up)
  or a request of the wrong length: ignored.

Each mapping is one rule of the nftables table ``ip hmpmp`` (chain ``prerouting``, before the
router's own NAT): a ``dnat`` of what reaches the external address at the external port to the
internal host and port. The whole table is written again, atomically, on every change; the
router's ``forward`` chain lets in what a ``dnat`` admitted (``add_portmap`` adds that rule).
Mappings expire at the end of their lifetime; on SIGTERM every mapping is deleted and the
table removed.

The log (``--log``) has one JSON line per event: first ``{"event": "listening", ...}``, then
``add``, ``renew`` and ``delete`` of a mapping (``protocol``, ``internal``, ``external``,
``lifetime``; a deletion's ``reason``: ``request``, ``expired`` or ``stopped``) and
``refused`` (``result``, ``client``): what a test reads to tell a mapping deleted at the
node's request from one that expired.

The state (``Gateway``) is pure: bytes, the asking address and the time in; a response, events
and the table's rules out. Only ``serve`` does I/O.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from hypermesh.transport.portmap import (
    MAX_MESSAGE,
    OP_EXTERNAL,
    OP_MAP_TCP,
    OP_MAP_UDP,
    RESPONSE,
    SERVER_PORT,
    UNSPECIFIED,
    VERSION,
    BadMessage,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Result,
    parse_request,
)

TABLE = "hmpmp"
"""The nftables table (family ip) that holds the mappings' ``dnat`` rules."""
OUTSIDE = "eth0"
"""The router's outside interface (``tests.lab.nat.OUTSIDE``)."""
MAX_MAPPINGS = 64
MAX_LIFETIME = 7200
"""Seconds: a longer lifetime asked for is granted this (RFC 6886 §3.3 recommends 7200)."""
FIRST_PORT = 1024
"""The lowest external port handed out."""
PROTOCOL_OF = {OP_MAP_UDP: "udp", OP_MAP_TCP: "tcp"}


@dataclass(frozen=True, slots=True)
class Mapping:
    """``external_port`` of the router leads to ``client:internal_port`` until ``expires``
    (the server's monotonic clock)."""

    protocol: str
    client: str
    internal_port: int
    external_port: int
    lifetime: int
    expires: float


@dataclass(frozen=True, slots=True)
class Event:
    """What happened to a mapping: ``add``, ``renew`` or ``delete`` (with its ``reason``)."""

    event: str
    mapping: Mapping
    reason: str = "request"

    def to_json(self, external: str) -> dict[str, Any]:
        m = self.mapping
        return {
            "event": self.event,
            "reason": self.reason,
            "protocol": m.protocol,
            "internal": f"{m.client}:{m.internal_port}",
            "external": f"{external}:{m.external_port}",
            "lifetime": m.lifetime,
        }


Key = tuple[str, str, int]
"""A mapping's identity: protocol, client address, internal port."""


class Gateway:
    """The NAT-PMP state of one router (pure: no socket, no clock, no nft)."""

    def __init__(self, external: str, lan: str, started: float) -> None:
        self.external = str(ipaddress.IPv4Address(external))
        self.lan = ipaddress.IPv4Network(lan, strict=False)
        self.started = started
        self.mappings: dict[Key, Mapping] = {}

    def epoch(self, now: float) -> int:
        return max(0, int(now - self.started)) & 0xFFFFFFFF

    def handle(self, data: bytes, client: str, now: float) -> tuple[bytes | None, list[Event]]:
        """The response to ``data`` from ``client`` (None: ignored) and what it changed."""
        if len(data) < 2 or data[1] >= RESPONSE:
            return None, []
        version, opcode = data[0], data[1]
        if version != VERSION:
            return self._header(opcode, Result.UNSUPPORTED_VERSION, now), []
        if opcode != OP_EXTERNAL and opcode not in PROTOCOL_OF:
            return self._header(opcode, Result.UNSUPPORTED_OPCODE, now), []
        if opcode == OP_EXTERNAL:
            if len(data) != 2:
                return None, []
            result = Result.SUCCESS if self._ours(client) else Result.NOT_AUTHORIZED
            address = self.external if result is Result.SUCCESS else UNSPECIFIED
            return ExternalAddressResponse(result, self.epoch(now), address).to_wire(), []
        if len(data) != 12:
            return None, []
        protocol = PROTOCOL_OF[opcode]
        _, _, _, internal, _, lifetime = struct.unpack("!BBHHHI", data)
        if not self._ours(client):
            return self._refusal(protocol, internal, Result.NOT_AUTHORIZED, now), []
        if internal == 0:
            if lifetime != 0:
                return None, []  # a port 0 is only ever deleted (every mapping of the host)
            return self._reply(protocol, 0, 0, 0, now), self._delete_all(protocol, client)
        try:
            request = parse_request(data)
        except BadMessage:
            return None, []
        assert isinstance(request, MapRequest)
        return self._map(request, client, now)

    def _ours(self, client: str) -> bool:
        with contextlib.suppress(ValueError):
            return ipaddress.IPv4Address(client) in self.lan
        return False

    def _header(self, opcode: int, result: Result, now: float) -> bytes:
        return struct.pack("!BBHI", VERSION, RESPONSE + opcode, result, self.epoch(now))

    def _reply(self, protocol: str, internal: int, external: int, life: int, now: float) -> bytes:
        epoch = self.epoch(now)
        return MapResponse(protocol, Result.SUCCESS, epoch, internal, external, life).to_wire()

    def _refusal(self, protocol: str, internal: int, result: Result, now: float) -> bytes:
        return MapResponse(protocol, result, self.epoch(now), internal).to_wire()

    def _map(self, request: MapRequest, client: str, now: float) -> tuple[bytes, list[Event]]:
        key = (request.protocol, client, request.internal_port)
        held = self.mappings.get(key)
        if request.lifetime == 0:
            events = []
            if held is not None:
                del self.mappings[key]
                events.append(Event("delete", held))
            return self._reply(request.protocol, request.internal_port, 0, 0, now), events
        lifetime = min(request.lifetime, MAX_LIFETIME)
        if held is not None:
            held = replace(held, lifetime=lifetime, expires=now + lifetime)
            self.mappings[key] = held
            event = Event("renew", held)
        else:
            port = self._free_port(request.protocol, request.external_port, request.internal_port)
            if port is None or len(self.mappings) >= MAX_MAPPINGS:
                refused = Result.OUT_OF_RESOURCES
                return self._refusal(request.protocol, request.internal_port, refused, now), []
            held = Mapping(
                request.protocol, client, request.internal_port, port, lifetime, now + lifetime
            )
            self.mappings[key] = held
            event = Event("add", held)
        reply = self._reply(request.protocol, held.internal_port, held.external_port, lifetime, now)
        return reply, [event]

    def _free_port(self, protocol: str, suggested: int, internal: int) -> int | None:
        taken = {m.external_port for m in self.mappings.values() if m.protocol == protocol}
        for port in (suggested, internal):
            if port >= FIRST_PORT and port not in taken:
                return port
        return next((p for p in range(FIRST_PORT, 0x10000) if p not in taken), None)

    def _delete_all(self, protocol: str, client: str) -> list[Event]:
        gone = [k for k in self.mappings if k[0] == protocol and k[1] == client]
        return [Event("delete", self.mappings.pop(k)) for k in gone]

    def expire(self, now: float) -> list[Event]:
        """Delete the mappings whose lifetime ended by ``now``."""
        gone = [k for k, m in self.mappings.items() if m.expires <= now]
        return [Event("delete", self.mappings.pop(k), "expired") for k in gone]

    def stop(self) -> list[Event]:
        """Delete every mapping (the server stops)."""
        events = [Event("delete", m, "stopped") for m in self.mappings.values()]
        self.mappings.clear()
        return events

    def next_expiry(self) -> float | None:
        return min((m.expires for m in self.mappings.values()), default=None)

    def rules(self) -> str:
        """The nftables script that makes table ``ip hmpmp`` hold exactly the mappings (one
        transaction: the table made if missing, deleted, made again)."""
        lines = [
            f'    iifname "{OUTSIDE}" ip daddr {self.external} {m.protocol} dport'
            f" {m.external_port} dnat to {m.client}:{m.internal_port}"
            f' comment "nat-pmp {m.protocol} {m.client}:{m.internal_port}"\n'
            for m in sorted(self.mappings.values(), key=lambda m: (m.protocol, m.external_port))
        ]
        return (
            f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"
            f"table ip {TABLE} {{\n"
            "  chain prerouting { type nat hook prerouting priority dstnat - 1; policy accept;\n"
            f"{''.join(lines)}  }}\n}}\n"
        )


# -- the server (I/O) --------------------------------------------------------------------------


def apply(script: str) -> None:
    """Load an nftables script in this namespace; ``RuntimeError`` with nft's message."""
    done = subprocess.run(
        ["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=20
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft -f: exit {done.returncode}: {done.stderr.strip()}")


class _Log:
    def __init__(self, stream: IO[str], external: str) -> None:
        self.stream, self.external = stream, external

    def write(self, line: dict[str, Any]) -> None:
        self.stream.write(json.dumps({"time": round(time.time(), 3), **line}) + "\n")
        self.stream.flush()

    def events(self, events: list[Event]) -> None:
        for event in events:
            self.write(event.to_json(self.external))


def _stop(_signal: int, _frame: object) -> None:
    raise SystemExit(0)


def serve(listen: str, lan: str, external: str, log_path: Path, port: int = SERVER_PORT) -> int:
    """Answer NAT-PMP on ``listen:port`` until SIGTERM (see the module's docstring)."""
    gateway = Gateway(external, lan, time.monotonic())
    signal.signal(signal.SIGTERM, _stop)
    with (
        log_path.open("a") as stream,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        log = _Log(stream, gateway.external)
        sock.bind((listen, port))
        apply(gateway.rules())
        log.write({"event": "listening", "address": f"{listen}:{port}", "external": external})
        try:
            _loop(sock, gateway, log)
        finally:
            log.events(gateway.stop())
            apply(f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")
    return 0


def _loop(sock: socket.socket, gateway: Gateway, log: _Log) -> None:
    while True:
        now = time.monotonic()
        expiry = gateway.next_expiry()
        wait = 1.0 if expiry is None else min(1.0, max(0.0, expiry - now))
        readable, _, _ = select.select([sock], [], [], wait)
        now = time.monotonic()
        if readable:
            data, (client, client_port) = sock.recvfrom(MAX_MESSAGE)
            response, events = gateway.handle(data, client, now)
            if events:
                apply(gateway.rules())  # the rules hold before the client hears of them
                log.events(events)
            if response is not None:
                result = struct.unpack_from("!H", response, 2)[0]
                if result != Result.SUCCESS:
                    log.write({"event": "refused", "result": result, "client": client})
                sock.sendto(response, (client, client_port))
        expired = gateway.expire(now)
        if expired:
            apply(gateway.rules())
            log.events(expired)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab.natpmp_router",
        description="The lab's NAT-PMP server (RFC 6886), run inside a router namespace.",
        epilog="example: ip netns exec TAG-pmp.r1 python -m tests.lab.natpmp_router"
        " --listen 198.18.101.1 --lan 198.18.101.0/30 --external 198.18.55.6"
        " --log /tmp/natpmp.log",
    )
    parser.add_argument("--listen", required=True, help="the router's LAN address")
    parser.add_argument("--lan", required=True, help="the LAN whose hosts may ask (a network)")
    parser.add_argument("--external", required=True, help="the router's outside address")
    parser.add_argument("--log", required=True, type=Path, help="the JSON-lines event log")
    parser.add_argument("--port", type=int, default=SERVER_PORT, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        for value in (args.listen, args.external):
            ipaddress.IPv4Address(value)
        ipaddress.IPv4Network(args.lan, strict=False)
        return serve(args.listen, args.lan, args.external, args.log, args.port)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"python -m tests.lab.natpmp_router: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
