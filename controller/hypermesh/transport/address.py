"""``host:port`` addresses as nodes write and read them (IPv6 hosts go in brackets), and
``PeerRef``, a node at an address with a pinned key. The only address codec of HyperMesh.

One rule says what an address is: ``HOST_PORT_PATTERN``, which the schemas give to every
address field, so that ``hmctl validate``, the CRDs on a cluster and every node answer alike.
``parse_address`` accepts exactly what that pattern accepts and says in words what is wrong
with anything else (``explain``); ``format_address`` is its inverse. This module imports
nothing of HyperMesh, so the pure core (``hypermesh.model``) can use it too.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cache

__all__ = [
    "EXAMPLE",
    "HOSTNAME_PATTERN",
    "HOST_PORT_PATTERN",
    "IPV4_PATTERN",
    "IPV6_PATTERN",
    "MAX_PORT",
    "PORT_PATTERN",
    "PeerRef",
    "explain",
    "format_address",
    "parse_address",
]

EXAMPLE = "e.g. 127.0.0.1:0, [::1]:4433 or node.example:443"
"""What an address looks like, for messages."""

MAX_PORT = 65535

_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_PATTERN = rf"{_OCTET}(\.{_OCTET}){{3}}"
"""A dotted-quad IPv4 address, each part 0-255 without leading zeros (unanchored)."""


def _ipv6_pattern() -> str:
    """Every text form of an IPv6 address (RFC 4291 §2.2): eight groups, or fewer around one
    ``::``, the last two groups optionally written as an IPv4 address."""
    group = "[0-9A-Fa-f]{1,4}"
    forms = [f"({group}:){{7}}{group}", f"({group}:){{6}}{IPV4_PATTERN}"]
    for left in range(8):  # groups before the "::"
        head = "" if left == 0 else group if left == 1 else f"({group}:){{{left - 1}}}{group}"
        tails = []
        if left <= 6:  # then up to 7 - left groups
            more = 6 - left
            tails.append(f"{group}(:{group}){{0,{more}}}" if more else group)
        if left <= 5:  # or up to 5 - left groups and an IPv4 address
            more = 5 - left
            tails.append(f"({group}:){{0,{more}}}{IPV4_PATTERN}" if more else IPV4_PATTERN)
        tail = f"({'|'.join(tails)})?" if tails else ""
        forms.append(f"{head}::{tail}")
    return "(" + "|".join(forms) + ")"


IPV6_PATTERN = _ipv6_pattern()
"""An IPv6 address in any of its text forms, without brackets (unanchored)."""

HOSTNAME_PATTERN = (
    r"([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?\.)*"
    r"([0-9][-0-9]*)?[A-Za-z]([-A-Za-z0-9]*[A-Za-z0-9])?"
)
"""A host name: dot-separated labels of letters, digits and '-'; the last label holds a letter,
so that nothing shaped like an IP address (``999.1.1.1``, ``1.2.3``) passes for a name."""

PORT_PATTERN = (
    "(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
"""A port, 0 to 65535 in decimal without leading zeros (unanchored)."""

HOST_PORT_PATTERN = (
    rf"^(\[{IPV6_PATTERN}(%[0-9A-Za-z_.-]+)?\]|{IPV4_PATTERN}|{HOSTNAME_PATTERN}):{PORT_PATTERN}$"
)
"""``host:port``, the one type of every address field: an IPv4 address, a bracketed IPv6
address (with an optional ``%zone``) or a host name, then a port 0-65535. A JSON Schema
(ECMA-262) pattern: ``$`` is the end of the text."""


@cache
def _host_port() -> re.Pattern[str]:
    """``HOST_PORT_PATTERN`` compiled, once, on first use (it is large)."""
    return re.compile(HOST_PORT_PATTERN)


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:0"`` → ``("127.0.0.1", 0)``; ``"[::1]:53"`` → ``("::1", 53)``.

    ``ValueError`` saying what is wrong (``explain``) when ``address`` is not a ``host:port``
    that ``HOST_PORT_PATTERN`` accepts: nothing is trimmed, nothing is guessed.
    """
    if not isinstance(address, str) or _host_port().fullmatch(address) is None:
        raise ValueError(explain(address))
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:]
    else:
        host, _, port = address.rpartition(":")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    """The inverse of ``parse_address``: brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def explain(text: object) -> str:
    """Why ``text`` is not a ``host:port`` (for one that ``parse_address`` refuses)."""
    if not isinstance(text, str):
        return f"expected host:port as a string, got {type(text).__name__}"
    if not text:
        return f"expected host:port, got an empty string ({EXAMPLE})"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return f"{text!r}: an IPv6 host needs its closing bracket ({EXAMPLE})"
        if not rest.startswith(":"):
            return f"{text!r}: expected :PORT after the bracketed IPv6 host ({EXAMPLE})"
        port = rest[1:]
        problem = _port_problem(port) or _ipv6_problem(host)
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            return f"{text!r} has no port: expected host:port ({EXAMPLE})"
        if ":" in host:
            return f"{text!r}: put an IPv6 host in brackets, as in [::1]:{port}"
        problem = _port_problem(port) or _host_problem(host)
    return f"{text!r}: {problem or 'not a host:port'}"


def _port_problem(port: str) -> str | None:
    if not port:
        return "the port is missing (0 picks any free port)"
    if not (port.isascii() and port.isdigit()):
        return f"the port {port!r} is not a number"
    if int(port) > MAX_PORT:
        return f"port {int(port)} is out of range (0-{MAX_PORT})"
    if len(port) > 1 and port.startswith("0"):
        return f"the port {port!r} has leading zeros"
    return None


def _ipv6_problem(host: str) -> str | None:
    address, _, zone = host.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return f"{address!r} is not an IPv6 address"
    if "%" in host and not zone:
        return "the IPv6 zone after '%' is empty"
    return "the IPv6 zone may hold only letters, digits, '_', '.' and '-'" if zone else None


def _host_problem(host: str) -> str:
    if not host:
        return "the host is missing"
    if all(part.isascii() and part.isdigit() for part in host.split(".")):
        return f"{host!r} is not an IPv4 address (four numbers 0-255 without leading zeros)"
    return (
        f"{host!r} is not a host name (letters, digits and '-' in dot-separated labels, the "
        "last one holding a letter)"
    )


@dataclass(frozen=True, slots=True)
class PeerRef:
    """A node at an address with a pinned key: where it answers (``host:port``) and the node
    ID it must prove in the QUIC handshake.

    The one spelling of "another node" across HyperMesh (mirrors, chain followers, tunnels,
    the SDK, the drivers). ``node_id`` is None only where what is fetched is verified by
    other means (a mirror's signed zones, from a registry named by address alone).
    """

    address: str
    node_id: str | None = None

    def __post_init__(self) -> None:
        parse_address(self.address)  # ValueError names the bad address

    @property
    def host(self) -> str:
        return parse_address(self.address)[0]

    @property
    def port(self) -> int:
        return parse_address(self.address)[1]

    def __str__(self) -> str:
        return f"{self.node_id}@{self.address}" if self.node_id else self.address
