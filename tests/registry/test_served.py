"""A zone the registry builds, served by a node's DNS engine on a real QUIC socket: dnspython
validates the answers' signatures with the zone's keys, and kdig +quic sees the same records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from hypermesh.dns.source import StaticZones
from hypermesh.drivers.targets import target_rrsets
from hypermesh.registry.zones import RecordSet, ZoneKeys, ZoneSpec, build_zone, verify_zone
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity
from tests.dns.conftest import DnsServer, ServerThread
from tests.dns.test_server import kdig

KEYS = ZoneKeys.generate()
NODE = Identity.generate()


@pytest.fixture(scope="module")
def served() -> Iterator[DnsServer]:
    records = [
        *target_rrsets("www", 300, "127.0.0.1:4433", NODE.node_id),
        RecordSet("@", "TXT", 300, ('"registered at a hypermesh registry"',)),
    ]
    zone = build_zone(
        ZoneSpec("acme", 7, glue={"ns1": ("127.0.0.1",)}), records, KEYS, now=int(time.time())
    )
    verify_zone(zone)
    thread = ServerThread(StaticZones([zone]))
    try:
        yield thread.start()
    finally:
        thread.stop()


def _ask(server: DnsServer, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    wire = asyncio.run(
        doq_query(server.address, query.to_wire(), expected_id=server.identity.node_id)
    )
    return dns.message.from_wire(wire)


def test_answers_validate_with_the_zone_keys(served: DnsServer) -> None:
    keys = _ask(served, "acme.", "DNSKEY")
    (dnskey,) = [r for r in keys.answer if r.rdtype == dns.rdatatype.DNSKEY]
    origin = dns.name.from_text("acme.")
    for rdtype in ("HTTPS", "A", "TXT"):
        name = "acme." if rdtype == "TXT" else "www.acme."
        response = _ask(served, name, rdtype)
        assert response.rcode() == dns.rcode.NOERROR
        rrset = next(r for r in response.answer if r.rdtype == dns.rdatatype.from_text(rdtype))
        sig = next(r for r in response.answer if r.rdtype == dns.rdatatype.RRSIG)
        dns.dnssec.validate(rrset, sig, {origin: dnskey})
    tlsa = _ask(served, "_4433._udp.www.acme.", "TLSA")
    assert NODE.public_key_bytes.hex() in tlsa.answer[0].to_text()


def test_nxdomain_is_proven_by_nsec(served: DnsServer) -> None:
    response = _ask(served, "nothing.acme.", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    types = {r.rdtype for r in response.authority}
    assert {dns.rdatatype.SOA, dns.rdatatype.NSEC, dns.rdatatype.RRSIG} <= types


def test_kdig_sees_the_same_records(served: DnsServer) -> None:
    parsed = kdig(served.port, "www.acme.", "HTTPS", "+dnssec")
    text = str(parsed)
    assert 'alpn="h3"' in text or "alpn=h3" in text
    assert "RRSIG" in text
