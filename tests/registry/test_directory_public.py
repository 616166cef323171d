"""A public network's node directory zone (``_nodes.``) is never copied whole, so it is built
without ZONEMD and without a journal; each record in it still verifies with DNSSEC, as a
validating client (dnspython) checks an answer, and the NSEC chain stays whole across updates,
expiries and withdrawals. A private network's directory keeps both, also when a registry's
directory changes mode."""

from __future__ import annotations

from typing import Any

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from sqlalchemy import text

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.source import StaticZones
from hypermesh.registry.directory import ZONE, Directory
from hypermesh.registry.errors import RegistryError
from hypermesh.registry.service import Registry
from hypermesh.registry.zones import verify_zone
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord, directory_name
from tests.registry.conftest import ADMIN

NOW = 1_800_000_000.0
ORIGIN = dns.name.from_text("_nodes.")


def record(key: Identity, seq: int = 1, address: str = "192.0.2.7", **kw: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "network": "acme",
        "name": f"n-{key.node_id[3:12]}",
        "interfaces": {"public": [f"{address}:4433"]},
        "issued_at": NOW,
        "lifetime": 60.0,
        "seq": seq,
        **kw,
    }
    return NodeRecord.issue(key, **fields).to_json()


def journal_rows(registry: Registry) -> int:
    with registry.engine.connect() as conn:
        query = text("SELECT count(*) FROM registry_journal WHERE tld = :tld")
        return int(conn.execute(query, {"tld": ZONE}).scalar_one())


def nsec_chain(zone: Any) -> list[str]:
    """The names met following the NSEC chain from the apex back to it."""
    seen: list[str] = []
    name = dns.name.empty
    while True:
        seen.append(name.to_text())
        nsec = zone.find_rdataset(name, dns.rdatatype.NSEC)
        name = nsec[0].next.relativize(ORIGIN)
        if name == dns.name.empty or len(seen) > len(zone.nodes):
            return seen


def ask(engine: DnsEngine, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    answer = engine.answer(query.to_wire())
    assert answer is not None
    return dns.message.from_wire(answer)


def validated(reply: dns.message.Message, section: list[Any], keys: Any) -> dns.rrset.RRset:
    """The one non-RRSIG RRset of ``section``, checked with its RRSIG against ``keys``."""
    rrsets: list[dns.rrset.RRset] = [r for r in section if r.rdtype != dns.rdatatype.RRSIG]
    [rrset] = rrsets
    [sigs] = [r for r in section if r.rdtype == dns.rdatatype.RRSIG and r.covers == rrset.rdtype]
    dns.dnssec.validate(rrset, sigs, {ORIGIN: keys}, now=NOW + 1)
    return rrset


def test_a_public_directory_zone_has_no_zonemd_and_verifies_with_dnssec(where: str) -> None:
    registry = Registry.open(where, admin=ADMIN.node_id, clock=lambda: NOW)
    try:
        directory = Directory(registry, "acme", public=True)
        keys = [Identity.generate() for _ in range(12)]
        for i, key in enumerate(keys):
            directory.publish(record(key, address=f"192.0.2.{i + 1}"))
        directory.publish(record(keys[0], seq=2, address="198.51.100.9"))
        directory.withdraw(keys[1].node_id)
        zone = registry.zone(ZONE)

        # No ZONEMD, not even in the apex's NSEC bitmap; nothing journalled.
        assert zone.get_rdataset("@", dns.rdatatype.ZONEMD) is None
        apex_nsec = zone.find_rdataset("@", dns.rdatatype.NSEC)[0]
        assert dns.rdatatype.ZONEMD not in {t for w in apex_nsec.windows for t in _types(w)}
        assert registry.journal_since(ZONE, 1) is None and journal_rows(registry) == 0
        verify_zone(zone, now=NOW + 1, digest=False)  # every signature
        with pytest.raises(RegistryError, match="no ZONEMD"):
            verify_zone(zone, now=NOW + 1)
        # The NSEC chain runs through every name once, the withdrawn one gone.
        chain = nsec_chain(zone)
        assert sorted(chain) == sorted(n.to_text() for n in zone.nodes)
        assert keys[1].node_id not in chain and keys[0].node_id in chain

        # Served: a validating client checks the DNSKEY, then the TXT and A of a record, and
        # the NSEC that proves a missing node is missing.
        engine = DnsEngine(StaticZones([zone]))
        reply = ask(engine, "_nodes.", "DNSKEY")
        dnskeys = validated(reply, reply.answer, zone.find_rdataset("@", dns.rdatatype.DNSKEY))
        reply = ask(engine, directory_name(keys[0].node_id), "TXT")
        txt = validated(reply, reply.answer, dnskeys)
        found = NodeRecord.from_txt([s for r in txt for s in r.strings], now=NOW + 1)
        assert (found.node_id, found.seq) == (keys[0].node_id, 2)
        reply = ask(engine, directory_name(keys[0].node_id), "A")
        assert {r.to_text() for r in validated(reply, reply.answer, dnskeys)} == {"198.51.100.9"}
        reply = ask(engine, directory_name(keys[1].node_id), "TXT")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        nsecs = [r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC]
        assert nsecs
        for nsec in nsecs:
            sigs = reply.find_rrset(
                reply.authority, nsec.name, nsec.rdclass, dns.rdatatype.RRSIG, nsec.rdtype
            )
            dns.dnssec.validate(nsec, sigs, {ORIGIN: dnskeys}, now=NOW + 1)
    finally:
        registry.close()


def _types(window: tuple[int, bytes]) -> set[int]:
    number, bits = window
    return {
        number * 256 + i * 8 + j
        for i, byte in enumerate(bits)
        for j in range(8)
        if byte & 0x80 >> j
    }


def test_a_private_directory_keeps_zonemd_and_journal_across_a_change_of_mode(
    where: str,
) -> None:
    registry = Registry.open(where, admin=ADMIN.node_id, clock=lambda: NOW)
    try:
        keys = [Identity.generate() for _ in range(5)]
        trusted = [k.node_id for k in keys]
        private = Directory(registry, "acme", trusted=trusted)
        for key in keys[:3]:
            private.publish(record(key))
        verify_zone(registry.zone(ZONE), now=NOW + 1)  # with its ZONEMD
        serial = registry.get_tld(ZONE).serial
        assert journal_rows(registry) == 3

        public = Directory(registry, "acme", public=True)  # the same registry, now public
        public.publish(record(keys[3]))
        zone = registry.zone(ZONE)
        assert zone.get_rdataset("@", dns.rdatatype.ZONEMD) is None
        verify_zone(zone, now=NOW + 1, digest=False)
        assert registry.journal_since(ZONE, serial) is None and journal_rows(registry) == 3

        private = Directory(registry, "acme", trusted=trusted)  # and private again
        private.publish(record(keys[4]))
        zone = registry.zone(ZONE)
        verify_zone(zone, now=NOW + 1)  # a ZONEMD again, over the whole zone
        assert zone.get_rdataset("@", dns.rdatatype.ZONEMD) is not None
        assert sorted(nsec_chain(zone)) == sorted(n.to_text() for n in zone.nodes)
        after = registry.journal_since(ZONE, registry.get_tld(ZONE).serial - 1)
        assert after is not None and len(after) == 1
        assert registry.journal_since(ZONE, serial) is None  # the public serials have no entry
    finally:
        registry.close()


def test_a_public_directory_is_read_back_after_a_restart(where: str) -> None:
    registry = Registry.open(where, admin=ADMIN.node_id, clock=lambda: NOW)
    key = Identity.generate()
    Directory(registry, "acme", public=True).publish(record(key))
    serial = registry.get_tld(ZONE).serial
    registry.close()
    reopened = Registry.open(where, admin=ADMIN.node_id, clock=lambda: NOW)
    try:
        directory = Directory(reopened, "acme", public=True)
        assert reopened.get_tld(ZONE).serial == serial
        directory.publish(record(key, seq=2))
        zone = reopened.zone(ZONE)
        verify_zone(zone, now=NOW + 1, digest=False)
        assert zone.get_rdataset("@", dns.rdatatype.ZONEMD) is None
        txt = zone.find_rdataset(key.node_id, dns.rdatatype.TXT)
        assert NodeRecord.from_txt([s for r in txt for s in r.strings], now=NOW).seq == 2
    finally:
        reopened.close()


def test_a_batch_of_updates_is_one_serial_with_each_outcome(where: str) -> None:
    registry = Registry.open(where, admin=ADMIN.node_id, clock=lambda: NOW)
    try:
        keys = [Identity.generate() for _ in range(4)]
        member, stranger = keys[:3], keys[3]
        directory = Directory(registry, "acme", trusted=[k.node_id for k in member])
        directory.publish(record(member[0], seq=5))
        serial, journalled = registry.get_tld(ZONE).serial, journal_rows(registry)
        forged = dict(record(member[2]))
        forged["signature"] = record(member[1])["signature"]
        outcomes = directory.publish_many(
            [
                record(member[0], seq=4),  # older than the one held
                record(member[1], seq=1, address="192.0.2.1"),
                record(member[1], seq=2, address="192.0.2.2"),  # newer, in the same batch
                record(member[1], seq=2, address="192.0.2.3"),  # not newer than the one before
                forged,
                record(stranger),
                record(member[0], seq=6, address="198.51.100.6"),
            ]
        )
        kinds = [type(o).__name__ for o in outcomes]
        assert kinds == [
            "Stale",
            "NodeRecord",
            "NodeRecord",
            "Stale",
            "RegistryError",
            "Forbidden",
            "NodeRecord",
        ]
        assert registry.get_tld(ZONE).serial == serial + 1  # one signing pass
        assert journal_rows(registry) == journalled + 1  # private: one journal entry
        zone = registry.zone(ZONE)
        verify_zone(zone, now=NOW + 1)
        addresses = {
            k.node_id: {r.to_text() for r in zone.find_rdataset(k.node_id, "A")} for k in member[:2]
        }
        assert addresses == {
            member[0].node_id: {"198.51.100.6"},
            member[1].node_id: {"192.0.2.2"},
        }
        assert directory.get(member[1].node_id).seq == 2
        assert zone.get_rdataset(member[2].node_id, "TXT") is None
        assert zone.get_rdataset(stranger.node_id, "TXT") is None
        before = registry.get_tld(ZONE).serial
        assert [type(o).__name__ for o in directory.publish_many([forged])] == ["RegistryError"]
        assert registry.get_tld(ZONE).serial == before  # nothing admitted: no new serial
    finally:
        registry.close()
