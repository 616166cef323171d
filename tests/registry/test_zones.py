"""Zones: built, signed (Ed25519), digested (ZONEMD), verified, and journaled serial to serial."""

from __future__ import annotations

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from dns.dnssectypes import DSDigest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.registry.errors import RegistryError
from hypermesh.registry.zones import (
    RecordSet,
    ZoneKeys,
    ZoneSpec,
    apply_journal,
    build_zone,
    diff_zones,
    ds_records,
    serial_of,
    verify_zone,
    zone_records,
)

NOW = 1_800_000_000
KEYS = ZoneKeys.generate()
RECORDS = [
    RecordSet("www", "A", 300, ("192.0.2.10",)),
    RecordSet("www", "AAAA", 300, ("2001:db8::10",)),
    RecordSet("www", "HTTPS", 300, ('1 . alpn="h3" port=4433 ipv4hint=192.0.2.10',)),
    RecordSet("@", "TXT", 300, ('"hello"',)),
    RecordSet("mail", "MX", 300, ("10 mx.example.net.",)),
]


def spec(serial: int = 1, **kwargs: object) -> ZoneSpec:
    return ZoneSpec("acme", serial, glue={"ns1": ("192.0.2.1",)}, **kwargs)  # type: ignore[arg-type]


def test_a_signed_zone_verifies_rrset_by_rrset() -> None:
    zone = build_zone(spec(), RECORDS, KEYS, now=NOW)
    verify_zone(zone, ds_records(KEYS, "acme."), now=NOW)
    origin = dns.name.from_text("acme.")
    dnskeys = zone.get_rdataset("@", "DNSKEY")
    assert dnskeys is not None and sorted(k.flags for k in dnskeys) == [256, 257]
    # Independently of verify_zone: the HTTPS RRset's signature checks with the zone's DNSKEY.
    https = zone.find_rdataset("www", "HTTPS")
    sigs = zone.find_rdataset("www", "RRSIG", "HTTPS")
    dns.dnssec.validate(
        dns.rrset.from_rdata_list(dns.name.from_text("www.acme."), https.ttl, list(https)),
        dns.rrset.from_rdata_list(dns.name.from_text("www.acme."), sigs.ttl, list(sigs)),
        {origin: dnskeys},
        now=NOW,
    )
    assert zone.get_rdataset("www", "NSEC") is not None


def test_ds_matches_the_ksk_and_zonemd_verifies() -> None:
    zone = build_zone(spec(), RECORDS, KEYS, now=NOW)
    ksk, _ = KEYS.dnskeys()
    assert ds_records(KEYS, "acme.") == [
        dns.dnssec.make_ds("acme.", ksk, DSDigest.SHA256).to_text()
    ]
    zone.verify_digest()
    zonemd = zone.get_rdataset("@", "ZONEMD")
    assert zonemd is not None and zonemd[0].serial == 1


def test_tampering_is_caught() -> None:
    zone = build_zone(spec(), RECORDS, KEYS, now=NOW)
    rdataset = zone.find_rdataset("www", "A")
    rdataset.clear()
    rdataset.add(dns.rdata.from_text("IN", "A", "203.0.113.66"), 300)
    with pytest.raises(RegistryError, match=r"www\.acme\. A"):
        verify_zone(zone, now=NOW)


def test_another_registry_keys_are_not_trusted() -> None:
    zone = build_zone(spec(), RECORDS, KEYS, now=NOW)
    with pytest.raises(RegistryError, match="no DNSKEY matches the trusted DS"):
        verify_zone(zone, ds_records(ZoneKeys.generate(), "acme."), now=NOW)


def test_unsigned_zone_still_has_a_zonemd() -> None:
    zone = build_zone(spec(dnssec=False), RECORDS, None, now=NOW)
    zone.verify_digest()
    assert zone.get_rdataset("@", "RRSIG", "SOA") is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (RecordSet("www", "A", 300, ("not-an-address",)), "value 'not-an-address' is not valid"),
        (RecordSet("www", "BOGUS", 300, ("x",)), "unknown record type"),
        (RecordSet("@", "NS", 300, ("evil.example.",)), "apex SOA and NS"),
        (RecordSet("www", "RRSIG", 300, ("A 15 2 300 0 0 1 acme. AAAA",)), "DNSSEC records"),
        (RecordSet("www", "A", -1, ("192.0.2.1",)), "out of range"),
    ],
)
def test_bad_records_name_what_is_wrong(record: RecordSet, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        build_zone(spec(), [record], KEYS, now=NOW)


def test_keys_round_trip_through_pem() -> None:
    ksk, zsk = KEYS.to_pem()
    again = ZoneKeys.from_pem(ksk, zsk)
    assert again.dnskeys() == KEYS.dnskeys()


names = st.sampled_from(["www", "api", "mail", "a.b", "@"])
records = st.lists(
    st.builds(
        lambda name, last: RecordSet(name, "A", 300, (f"192.0.2.{last}",)),
        names,
        st.integers(1, 254),
    ),
    max_size=6,
    unique_by=lambda r: r.name,
)


@settings(max_examples=15, deadline=None)
@given(records, records)
def test_the_journal_reproduces_the_next_zone(
    before: list[RecordSet], after: list[RecordSet]
) -> None:
    old = build_zone(spec(1), before, KEYS, now=NOW)
    new = build_zone(spec(2), after, KEYS, now=NOW + 60)
    entry = diff_zones(old, new)
    assert (entry.from_serial, entry.to_serial) == (1, 2)
    rebuilt = apply_journal(old, entry)
    assert serial_of(rebuilt) == 2
    assert zone_records(rebuilt) == zone_records(new)
    verify_zone(rebuilt, ds_records(KEYS, "acme."), now=NOW + 60)
    with pytest.raises(RegistryError, match="starts at serial 1"):
        apply_journal(new, entry)
