"""A zone's ZONEMD checked over the wire, independently of HyperMesh's own verify code.

Everything comes from a live node: the DNSKEY, SOA and ZONEMD RRsets (with their RRSIGs) over
DNS over QUIC, and the zone's records over HTTP/3 from ``GET /registry/v1/ixfr?serial=0`` (the
whole zone, as a mirror takes it). Then dnspython alone judges: it recomputes the digest
(RFC 8976, SIMPLE, SHA-384) over those records and compares it with the ZONEMD the node serves
over DNS, validates that ZONEMD's RRSIG (and every other RRSIG of the zone) with the DNSKEY
RRset served over DNS, and checks the DNSKEY RRset is signed by a key matching the DS the
registry gave the owner. A zone changed by one record no longer matches (the check can fail).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from dns.dnssectypes import DSDigest
from dns.zonetypes import DigestHashAlgorithm, DigestScheme

from hypermesh.transport.client import connect_h3
from hypermesh.transport.dns_client import doq_query


@dataclass(frozen=True)
class Checked:
    """What the check saw: the zone as fetched, its serial and the ZONEMD served over DNS."""

    zone: dns.zone.Zone
    serial: int
    zonemd: dns.rrset.RRset


async def _ask(address: str, pin: str, name: dns.name.Name, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    wire = await doq_query(address, query.to_wire(), expected_id=pin, identity=None)
    response = dns.message.from_wire(wire)
    assert response.rcode() == dns.rcode.NOERROR, (
        name,
        rdtype,
        dns.rcode.to_text(response.rcode()),
    )
    return response


def _pair(response: dns.message.Message, name: dns.name.Name, rdtype: str) -> tuple[Any, Any]:
    wanted = dns.rdatatype.from_text(rdtype)
    rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, wanted)
    sig = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, wanted)
    assert rrset is not None and sig is not None, f"{name} {rdtype}: no signed answer"
    return rrset, sig


async def _zone_text(address: str, pin: str, origin: dns.name.Name) -> tuple[int, str]:
    path = f"/registry/v1/ixfr?tld={origin.to_text(omit_final_dot=True)}&serial=0"
    async with asyncio.timeout(10), connect_h3(address, expected_id=pin, identity=None) as h3:
        status, _, body = await h3.request("GET", path)
    assert status == 200, (path, status, body[:200])
    data = json.loads(body)
    assert "zone" in data, f"{path} did not answer the whole zone: {sorted(data)}"
    return int(data["serial"]), str(data["zone"])


async def check_zonemd(address: str, pin: str, zone_name: str, ds: Iterable[str] = ()) -> Checked:
    """Fetch ``zone_name`` from the node at ``address`` (node ID ``pin``) and check its ZONEMD
    and signatures with dnspython alone; ``ds``: DS records (text) the DNSKEY must match."""
    origin = dns.name.from_text(zone_name)
    dnskey, dnskey_sig = _pair(await _ask(address, pin, origin, "DNSKEY"), origin, "DNSKEY")
    keys = {origin: dnskey}
    dns.dnssec.validate(dnskey, dnskey_sig, keys)
    for text in ds:
        assert any(
            dns.dnssec.make_ds(origin, key, DSDigest.SHA256).to_text() == text
            for key in dnskey
            if key.flags & 0x0001  # SEP: the KSK
        ), f"no key of {origin} matches the DS {text}"

    zonemd, zonemd_sig = _pair(await _ask(address, pin, origin, "ZONEMD"), origin, "ZONEMD")
    dns.dnssec.validate(zonemd, zonemd_sig, keys)
    (record,) = list(zonemd)
    assert (record.scheme, record.hash_algorithm) == (
        DigestScheme.SIMPLE,
        DigestHashAlgorithm.SHA384,
    )

    serial, text = await _zone_text(address, pin, origin)
    zone = dns.zone.from_text(text, origin=origin, relativize=False)
    soa = zone.get_soa()
    assert soa.serial == serial == record.serial, (soa.serial, serial, record.serial)
    # The digest of the records fetched over HTTP/3, recomputed by dnspython, is the ZONEMD
    # served over DNS (whatever ZONEMD the zone text itself carries).
    zone.verify_digest(record)
    assert zone.compute_digest(DigestHashAlgorithm.SHA384) == record
    # The zone's keys are the keys served over DNS, and every signature in it verifies.
    assert zone.find_rrset(origin, "DNSKEY") == dnskey
    signed = 0
    for name, node in zone.nodes.items():
        for rdataset in node:
            if rdataset.rdtype != dns.rdatatype.RRSIG:
                continue
            covered = node.get_rdataset(dns.rdataclass.IN, rdataset.covers)
            assert covered is not None, f"{name}: an RRSIG over nothing"
            rrset = dns.rrset.from_rdata_list(name, covered.ttl, list(covered))
            sigs = dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))
            dns.dnssec.validate(rrset, sigs, keys)
            signed += 1
    apex = zone.get_node(origin)
    assert apex is not None
    for rdtype in ("SOA", "DNSKEY", "NSEC", "ZONEMD"):
        covers = dns.rdatatype.from_text(rdtype)
        assert apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, covers) is not None
    assert signed >= 4
    return Checked(zone, serial, zonemd)


def tampered(zone: dns.zone.Zone) -> dns.zone.Zone:
    """A copy of ``zone`` with one TXT record added at the apex: its digest must not match."""
    assert zone.origin is not None
    copy = dns.zone.from_text(zone.to_text(), origin=zone.origin, relativize=False)
    with copy.writer() as txn:
        txn.add(zone.origin, 300, dns.rdata.from_text("IN", "TXT", '"added by no one"'))
    return copy
