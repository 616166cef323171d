"""A DNSSEC-signed test zone, and a node's QUIC endpoint run in a thread on 127.0.0.1.

The server is the node's own endpoint (``bind_endpoint`` with the node's router and DNS
engine) run in a thread with its own event loop, so that blocking clients (dnspython's sync
API, kdig in a subprocess) can query it from the test's thread. Shared by the DNS, registry,
mirror, messaging, node and fuzz tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import dns.dnssec
import dns.name
import dns.node
import dns.rdataset
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dns.dnssectypes import Algorithm

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.source import StaticZones
from hypermesh.node.router import Router
from hypermesh.node.routes import add_dns_routes
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.identity import Identity
from tests.harness.loop_thread import LoopThread

ORIGIN = dns.name.from_text("hmtest.")
ZONE_TEXT = """
$TTL 300
@        3600 IN SOA  ns1 hostmaster 2026010101 7200 3600 1209600 120
@             IN NS   ns1
ns1           IN A    192.0.2.1
ns1           IN AAAA 2001:db8::1
www           IN A    192.0.2.10
www           IN AAAA 2001:db8::10
www       60  IN TXT  "short-lived"
alias         IN CNAME www
loop1         IN CNAME loop2
loop2         IN CNAME loop1
outside       IN CNAME www.example.net.
a.deep        IN TXT  "deep"
*.wild        IN TXT  "wildcard"
sub           IN NS   ns.sub
ns.sub        IN A    192.0.2.53
"""


@dataclass(frozen=True)
class SignedZone:
    """A signed zone and the DNSKEY RRset that validates it."""

    zone: dns.zone.Zone
    keys: dict[dns.name.Name, dns.node.Node | dns.rdataset.Rdataset]


def make_zone(text: str = ZONE_TEXT, origin: dns.name.Name = ORIGIN) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=origin, relativize=True)


def sign(zone: dns.zone.Zone) -> SignedZone:
    """Sign ``zone`` in place with an Ed25519 KSK and ZSK (RFC 8080), NSEC chain included."""
    ksk, zsk = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ksk_key = dns.dnssec.make_dnskey(ksk.public_key(), Algorithm.ED25519, flags=257)
    zsk_key = dns.dnssec.make_dnskey(zsk.public_key(), Algorithm.ED25519, flags=256)
    dns.dnssec.sign_zone(zone, keys=[(ksk, ksk_key), (zsk, zsk_key)], lifetime=86400)
    assert zone.origin is not None
    dnskeys = zone.find_rrset(zone.origin, "DNSKEY")
    absolute = dns.rrset.from_rdata_list(zone.origin, dnskeys.ttl, list(dnskeys))
    return SignedZone(zone, {zone.origin: absolute})


@dataclass
class DnsServer:
    """A running in-process endpoint: where it listens, what it serves, and its identity."""

    port: int
    zones: StaticZones
    answerer: DnsEngine
    identity: Identity
    endpoint: QuicEndpoint

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class ServerThread(LoopThread):
    """Runs ``bind_endpoint`` in a thread until ``stop``; every wait is bounded."""

    def __init__(
        self,
        zones: StaticZones,
        *,
        idle_timeout: float = 60.0,
        routes: Callable[[Router], object] | None = None,
    ) -> None:
        super().__init__("the DNS server")
        self.zones = zones
        self.idle_timeout = idle_timeout
        self.routes = routes
        self.server: DnsServer | None = None

    def start(self) -> DnsServer:
        self.start_serving()
        assert self.server is not None
        return self.server

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        identity = Identity.generate()
        answerer = DnsEngine(self.zones)
        router = add_dns_routes(Router(), answerer)
        if self.routes is not None:
            self.routes(router)
        endpoint = await bind_endpoint(
            "127.0.0.1",
            0,
            configuration=server_configuration(identity, idle_timeout=self.idle_timeout),
            router=router,
            dns_answer=answerer.answer,
        )
        stack.callback(endpoint.close)
        self.server = DnsServer(endpoint.port, self.zones, answerer, identity, endpoint)
