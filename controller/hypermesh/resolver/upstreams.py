"""Where names outside the mesh go: the system's resolvers (``resolv.conf``) or the ones given.

``read_resolv_conf`` is pure: the ``nameserver`` lines of a resolv.conf text, without the
stub's own address (a resolv.conf that points at the stub would send it its own questions).
``Upstreams`` asks them over UDP, and over TCP when the answer comes truncated, one after the
other; one that times out or fails is set aside for ``RETRY_AFTER`` seconds (asked again only
when every other one is set aside too), so a dead resolver costs one timeout, not one per query.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message

from hypermesh.errors import HyperMeshError
from hypermesh.transport.address import format_address, parse_address

DNS_PORT = 53
MAX_NAMESERVERS = 8
"""resolv.conf entries kept (glibc reads 3; more only costs timeouts)."""
TIMEOUT = 2.0
"""Seconds to wait for one upstream's answer."""
RETRY_AFTER = 5.0
"""Seconds an upstream that failed is set aside."""
MAX_RESOLV_CONF = 65536
"""Bytes of resolv.conf read."""


class UpstreamUnreachable(HyperMeshError):
    """No upstream resolver answered."""


def read_resolv_conf(text: str, listen: str | None = None) -> tuple[str, ...]:
    """The ``nameserver`` addresses of resolv.conf ``text`` as ``host:port`` (port 53),
    without the stub's own (``listen``: its address; a stub on every address excludes every
    loopback address at its port), at most ``MAX_NAMESERVERS``. Lines that are not an IP
    address are skipped."""
    found: list[str] = []
    for line in text[:MAX_RESOLV_CONF].splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        host = words[1].split("%", 1)[0]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        address = format_address(host, DNS_PORT)
        if (listen is None or not is_own(listen, address)) and address not in found:
            found.append(address)
    return tuple(found[:MAX_NAMESERVERS])


def is_own(listen: str, address: str) -> bool:
    """Whether ``address`` reaches the stub listening on ``listen``: the same port, and the
    same host, or any loopback host when the stub listens on every address."""
    host, port = parse_address(listen)
    other_host, other_port = parse_address(address)
    if port != other_port:
        return False
    if _unspecified(host):
        try:
            return ipaddress.ip_address(other_host).is_loopback
        except ValueError:
            return False
    return _normal(listen) == _normal(address)


def _normal(address: str) -> str:
    host, port = parse_address(address)
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return format_address(host, port)


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclass(slots=True)
class _Health:
    failed_at: float | None = None


@dataclass
class Upstreams:
    """Resolvers asked in order, the healthy first; ``clock`` is monotonic seconds."""

    addresses: tuple[str, ...]
    timeout: float = TIMEOUT
    clock: Callable[[], float] = time.monotonic
    _health: dict[str, _Health] = field(default_factory=dict)
    asked: int = 0
    failures: int = 0

    def order(self) -> list[str]:
        """The addresses to try now: those not set aside, then those set aside longest."""
        now = self.clock()
        healthy, resting = [], []
        for address in self.addresses:
            failed = self._health.setdefault(address, _Health()).failed_at
            if failed is None or now - failed >= RETRY_AFTER:
                healthy.append(address)
            else:
                resting.append((failed, address))
        return healthy or [a for _, a in sorted(resting)]

    def state(self) -> list[dict[str, object]]:
        """Each upstream and whether it is set aside now (for the status)."""
        now = self.clock()
        return [
            {
                "address": address,
                "up": (h := self._health.get(address, _Health())).failed_at is None
                or now - h.failed_at >= RETRY_AFTER,
            }
            for address in self.addresses
        ]

    async def ask(self, query: dns.message.Message) -> dns.message.Message:
        """The first answer to ``query`` from an upstream (over TCP when UDP's was truncated);
        ``UpstreamUnreachable`` naming every failure when none answers."""
        if not self.addresses:
            raise UpstreamUnreachable("no upstream resolver is configured")
        problems = []
        for address in self.order():
            host, port = parse_address(address)
            self.asked += 1
            try:
                answer, _ = await dns.asyncquery.udp_with_fallback(
                    query, host, timeout=self.timeout, port=port
                )
            except (dns.exception.DNSException, OSError, ValueError) as exc:
                self.failures += 1
                self._health[address] = _Health(self.clock())
                problems.append(f"{address}: {type(exc).__name__} {exc}".strip())
                continue
            self._health[address] = _Health()
            return answer
        raise UpstreamUnreachable("; ".join(problems))


def system_upstreams(path: str, listen: str) -> tuple[str, ...]:
    """The resolvers resolv.conf at ``path`` names (``read_resolv_conf``); none when it cannot
    be read."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_RESOLV_CONF).decode("utf-8", "replace")
    except OSError:
        return ()
    return read_resolv_conf(text, listen)
