"""The host's own addresses, and what a wildcard bind (``0.0.0.0``, ``::``) stands for: where
the node's record says it is reached, and what its paths call its local candidates.

``AddressWatch`` tells when they change, as the kernel announces it (a netlink socket joined to
the address groups, read on the event loop): nothing is asked of the host until then."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from hypermesh.transport.address import format_address, parse_address


def is_wildcard(host: str) -> bool:
    """Whether ``host`` binds every address of the host (``0.0.0.0``, ``::`` or empty)."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def expand_wildcard(address: str, host_addresses: Callable[[], list[str]]) -> list[str]:
    """``address`` as others reach it: itself, or with a wildcard host each of the host's
    non-loopback addresses (of the family the wildcard binds: ``0.0.0.0`` IPv4, ``::`` both),
    loopback only when there is no other."""
    host, port = parse_address(address)
    if not is_wildcard(host):
        return [address]
    ipv4_only = ":" not in host
    found = [ipaddress.ip_address(a) for a in host_addresses()]
    if ipv4_only:
        found = [a for a in found if a.version == 4]
    usable = [a for a in found if not a.is_loopback and not a.is_link_local]
    if not usable:
        usable = [ipaddress.ip_address("127.0.0.1" if ipv4_only else "::1")]
    usable.sort(key=lambda a: (a.version == 6, a.packed))
    return [format_address(str(a), port) for a in dict.fromkeys(usable)]


def local_addresses() -> list[str]:
    """The host's IP addresses: IPv4 from each interface (``SIOCGIFADDR``), IPv6 from
    ``/proc/net/if_inet6``; on other systems what the host name resolves to."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        found += _ipv4_of_interfaces()
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    if not found:
        with contextlib.suppress(OSError):
            found = [str(i[4][0]) for i in socket.getaddrinfo(socket.gethostname(), None)]
    return list(dict.fromkeys(found))


def _ipv4_of_interfaces() -> list[str]:
    import fcntl  # Unix only; callers suppress the OSError elsewhere

    siocgifaddr = 0x8915
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), siocgifaddr, request)
            except OSError:
                continue  # no IPv4 address on this interface
            out.append(socket.inet_ntoa(answer[20:24]))
    return out


RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
"""The rtnetlink multicast groups of address events (``linux/rtnetlink.h``)."""
NETLINK_BUFFER = 65536


class AddressWatch:
    """The host's addresses, looked up again only when the kernel says they changed: a raw
    ``AF_NETLINK`` socket joined to ``RTMGRP_IPV4_IFADDR`` and ``RTMGRP_IPV6_IFADDR``, read on
    the event loop (``loop.add_reader``). Any message there (an address added or removed, or
    an overflow of the socket's queue) sets ``changed`` and marks the list for a new look.
    ``open`` returns None where netlink cannot be had (not Linux, or refused): the caller
    then looks at the addresses on a timer as before."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        lookup: Callable[[], list[str]] = local_addresses,
    ) -> None:
        self._sock = sock
        self._loop = loop
        self._lookup = lookup
        self._known: list[str] | None = None
        self.changed = asyncio.Event()
        """Set on every change the kernel announces; the waiter clears it."""
        self.events = 0
        """How many announcements were read (for the tests)."""

    @classmethod
    def open(
        cls,
        lookup: Callable[[], list[str]] = local_addresses,
        groups: int = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
    ) -> AddressWatch | None:
        """A watch on the running loop, or None without netlink."""
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            return None
        try:
            sock = socket.socket(family, socket.SOCK_RAW, getattr(socket, "NETLINK_ROUTE", 0))
        except OSError:
            return None
        try:
            sock.setblocking(False)
            sock.bind((0, groups))
            loop = asyncio.get_running_loop()
            watch = cls(sock, loop, lookup)
            loop.add_reader(sock.fileno(), watch._readable)
        except (OSError, RuntimeError):
            sock.close()
            return None
        return watch

    def addresses(self) -> list[str]:
        """The host's addresses (``local_addresses``), as of the last change announced."""
        if self._known is None:
            self._known = self._lookup()
        return list(self._known)

    def _readable(self) -> None:
        try:
            while self._sock.recv(NETLINK_BUFFER):
                self.events += 1
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # ENOBUFS: announcements were lost; look again all the same
            self.events += 1
        self._known = None
        self.changed.set()

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
