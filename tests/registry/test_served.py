"""A zone the registry builds, served by a node's DNS engine on a real QUIC socket: dnspython
validates the answers' signatures with the zone's keys, and kdig +quic sees the same records.
And a live registry (the registry API, its zones and its mirror feed on one endpoint): after
registration and after every kind of write, the ZONEMD it serves over DoQ is the digest
dnspython computes over the zone it serves over HTTP/3, signed by the zone's key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest

from hypermesh.dns import DnsEngine
from hypermesh.dns.source import StaticZones
from hypermesh.drivers.targets import target_rrsets
from hypermesh.mirror.feed import ZoneFeed
from hypermesh.node.mirror_api import add_feed_routes, zone_feed
from hypermesh.node.registry_api import add_registry_routes
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.registry.service import Registry
from hypermesh.registry.signing import sign_request
from hypermesh.registry.zones import RecordSet, ZoneKeys, ZoneSpec, build_zone, verify_zone
from hypermesh.transport.client import connect_h3
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import DnsServer, ServerThread
from tests.harness.kdig import kdig
from tests.harness.zonemd import check_zonemd, tampered

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
        doq_query(
            server.address, query.to_wire(), expected_id=server.identity.node_id, identity=None
        )
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


# -- ZONEMD over the wire, from a live registry ---------------------------------------------

OWNER = Identity.generate()


@contextlib.asynccontextmanager
async def live_registry(path: Path) -> AsyncIterator[tuple[str, str]]:
    """A registry on a real QUIC endpoint, as a registry node serves it: its API, its zones
    over DoQ and DoH3, and the mirrors' feed. Yields (address, node ID)."""
    registry = Registry.open(path)
    identity = Identity.generate()
    zones = StaticZones()
    feed: ZoneFeed = zone_feed(zones)
    router = Router()
    add_registry_routes(router, registry, zones, on_revocation=feed.revoked)
    add_feed_routes(router, registry, zones, feed, identity, "demo")
    answerer = DnsEngine(zones)
    endpoint = await bind_endpoint(
        "127.0.0.1",
        0,
        configuration=server_configuration(identity),
        router=router,
        dns_answer=answerer.answer,
    )
    try:
        yield endpoint.address, identity.node_id
    finally:
        endpoint.close()
        registry.close()


async def _write(address: str, pin: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    headers = [
        ("content-type", "application/json"),
        *sign_request(OWNER, "POST", path, raw, now=time.time()).items(),
    ]
    async with asyncio.timeout(10), connect_h3(address, expected_id=pin, identity=OWNER) as h3:
        status, _, answer = await h3.request("POST", path, headers=headers, body=raw)
    assert status in (200, 201), (path, status, answer)
    data: dict[str, Any] = json.loads(answer)
    return data


def _rrset(name: str, rdtype: str, *values: str, changetype: str = "REPLACE") -> dict[str, Any]:
    change: dict[str, Any] = {"name": name, "type": rdtype, "changetype": changetype}
    if values:
        change |= {"ttl": 300, "values": list(values)}
    return change


def test_zonemd_over_the_wire_matches_the_zone_after_every_write(tmp_path: Path) -> None:
    """Registration signs the zone in full; each later write re-signs it incrementally (the
    digest carried over from node to node): both must give the digest dnspython computes."""
    writes = [
        [_rrset("www", "A", "192.0.2.10", "192.0.2.11"), _rrset("www", "AAAA", "2001:db8::10")],
        [_rrset("@", "TXT", '"v=1"'), _rrset("mail", "MX", "10 mx.example.net.")],
        [_rrset("www", "A", "192.0.2.12")],  # replaced
        [_rrset("a.b.c", "TXT", '"deep"'), _rrset("sub", "NS", "ns.example.net.")],
        [_rrset("www", "AAAA", changetype="DELETE")],  # removed
    ]

    async def scenario() -> None:
        async with live_registry(tmp_path / "registry.db") as (address, pin):
            path = "/registry/v1/register"
            info = await _write(address, pin, path, {"tld": "acme", "network": "demo"})
            checked = await check_zonemd(address, pin, "acme.", info["ds"])
            serials = [checked.serial]
            for batch in writes:
                body = {"tld": "acme", "rrsets": batch}
                serial = (await _write(address, pin, "/registry/v1/rrsets", body))["serial"]
                checked = await check_zonemd(address, pin, "acme.", info["ds"])
                assert checked.serial == serial
                serials.append(serial)
            assert serials == sorted(set(serials))
            # The check can fail: one record more and dnspython's digest differs.
            with pytest.raises(dns.zone.DigestVerificationFailure):
                tampered(checked.zone).verify_digest(next(iter(checked.zonemd)))
            names = {n.to_text() for n in checked.zone.nodes}
            assert {"www.acme.", "a.b.c.acme.", "sub.acme.", "mail.acme."} <= names
            assert checked.zone.get_rdataset("www.acme.", "AAAA") is None

    asyncio.run(asyncio.wait_for(scenario(), 120))
