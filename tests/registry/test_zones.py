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
    NodeDigests,
    RecordSet,
    ZoneKeys,
    ZoneSpec,
    apply_journal,
    build_zone,
    diff_zones,
    ds_records,
    serial_of,
    update_zone,
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
        (
            RecordSet("www", "A", 300, ("not-an-address",)),
            "'not-an-address' is not a valid A value",
        ),
        (RecordSet("www", "BOGUS", 300, ("x",)), "unknown record type"),
        (RecordSet("@", "NS", 300, ("evil.example.",)), "apex SOA and NS"),
        (RecordSet("www", "RRSIG", 300, ("A 15 2 300 0 0 1 acme. AAAA",)), "DNSSEC records"),
        (RecordSet("www", "A", -1, ("192.0.2.1",)), "ttl -1 is not whole seconds"),
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


changes = st.dictionaries(
    st.tuples(
        st.sampled_from(["www", "api", "zz", "a.b", "b", "@", "Mail"]),
        st.sampled_from(["A", "TXT", "MX"]),
    ),
    st.one_of(st.none(), st.integers(1, 254)),
    min_size=1,
    max_size=5,
)


def record_set(key: tuple[str, str], value: int) -> RecordSet:
    name, rdtype = key
    text = {"A": f"192.0.2.{value}", "TXT": f'"v{value}"', "MX": f"{value} mx{value}.example.net."}
    return RecordSet(name, rdtype, 300 + value, (text[rdtype],))


@settings(max_examples=40, deadline=None)
@given(st.lists(changes, min_size=1, max_size=4))
def test_incremental_signing_equals_a_full_build(
    batches: list[dict[tuple[str, str], int | None]],
) -> None:
    """Batch after batch, the zone signed incrementally is the fully built zone, record for
    record (Ed25519 signatures are deterministic at the same ``now``), and it verifies."""
    current: dict[tuple[str, str], RecordSet] = {}
    zone = build_zone(spec(1), [], KEYS, now=NOW)
    digests = NodeDigests()  # carried across serials, as the registry does
    for serial, batch in enumerate(batches, start=2):
        delta = {k: (record_set(k, v) if v is not None else None) for k, v in batch.items()}
        for key, rrset in delta.items():
            if rrset is None:
                current.pop(key, None)
            else:
                current[key] = rrset
        changed: set[dns.name.Name] = set()
        updated = update_zone(
            zone, spec(serial), delta, KEYS, now=NOW, digests=digests, changed=changed
        )
        assert updated is not None
        full = build_zone(spec(serial), list(current.values()), KEYS, now=NOW)
        assert zone_records(updated) == zone_records(full)
        entry = diff_zones(zone, updated)  # the shortcut over shared nodes
        assert set(entry.added) == zone_records(full) - zone_records(zone)
        assert set(entry.removed) == zone_records(zone) - zone_records(full)
        assert diff_zones(zone, updated, changed) == entry  # only the names the batch changed
        updated.verify_digest()  # dnspython's own ZONEMD check
        zone = updated
    verify_zone(zone, ds_records(KEYS, "acme."), now=NOW)


def test_incremental_signing_leaves_the_old_zone_alone_and_keeps_old_signatures() -> None:
    old = build_zone(spec(1), RECORDS, KEYS, now=NOW)
    before = zone_records(old)
    new = update_zone(
        old, spec(2), {("api", "A"): RecordSet("api", "A", 60, ("192.0.2.7",))}, KEYS, now=NOW + 600
    )
    assert new is not None and zone_records(old) == before
    assert serial_of(new) == 2 and serial_of(old) == 1
    mail = dns.name.from_text("mail", None)
    assert new.nodes[mail] is old.nodes[mail]  # untouched: shared, signatures and all
    verify_zone(new, ds_records(KEYS, "acme."), now=NOW + 600)


def test_incremental_signing_refuses_what_a_full_build_refuses() -> None:
    old = build_zone(spec(1), RECORDS, KEYS, now=NOW)
    for key, message in [
        (("@", "NS"), "the registry manages the apex"),
        (("www", "RRSIG"), "DNSSEC records are the registry's"),
    ]:
        with pytest.raises(RegistryError, match=message):
            update_zone(old, spec(2), {key: RecordSet(key[0], key[1], 60, ("x",))}, KEYS, now=NOW)
    with pytest.raises(RegistryError, match="not a valid A value"):
        update_zone(
            old, spec(2), {("www", "A"): RecordSet("www", "A", 60, ("nope",))}, KEYS, now=NOW
        )


def test_delegations_and_unsigned_zones_take_the_full_build() -> None:
    old = build_zone(spec(1), RECORDS, KEYS, now=NOW)
    cut = {("sub", "NS"): RecordSet("sub", "NS", 60, ("ns.sub",))}
    assert update_zone(old, spec(2), cut, KEYS, now=NOW) is None
    delegated = build_zone(spec(1), [*RECORDS, *cut.values()], KEYS, now=NOW)
    www = {("www", "A"): RecordSet("www", "A", 60, ("192.0.2.9",))}
    assert update_zone(delegated, spec(2), www, KEYS, now=NOW) is None
    assert update_zone(old, spec(2, dnssec=False), www, KEYS, now=NOW) is None
