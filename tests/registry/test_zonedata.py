"""The one rule for names and record data (``hypermesh.zonedata``): every class of bad name and
value is refused saying which field; canonical forms are canonical; and whatever the rule
accepts, the full build accepts and the incremental signer gives the same zone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.registry.errors import RegistryError
from hypermesh.registry.service import Change, Registry
from hypermesh.registry.zones import (
    NodeDigests,
    ZoneKeys,
    ZoneSpec,
    build_zone,
    update_zone,
    zone_records,
)
from hypermesh.zonedata import (
    MAX_VALUES,
    RecordSet,
    ZoneDataError,
    check_zone,
    owner_name,
    record_type,
    tld_label,
)
from tests.registry.conftest import ADMIN, OWNER

ORIGIN = "acme."
KEYS = ZoneKeys.generate()
NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("www", "www"),
        ("Alias", "alias"),
        ("WWW.Acme.", "www"),
        ("acme.", "@"),
        ("ACME.", "@"),
        ("@", "@"),
        ("*.Dev", "*.dev"),
        ("_443._udp.www", "_443._udp.www"),
        ("xn--bcher-kva", "xn--bcher-kva"),
        ("bücher", "xn--bcher-kva"),
        ("acme", "acme"),  # relative: acme.acme.
    ],
)
def test_owner_names_are_canonical(given: str, canonical: str) -> None:
    assert owner_name(given, ORIGIN) == canonical
    assert owner_name(canonical, ORIGIN) == canonical


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("evil.example.", "outside the zone"),
        ("www.acme.evil.", "outside the zone"),
        (".", "outside the zone"),
        ("www.", "outside the zone"),
        ("", "cannot be empty"),
        ("a\x00b", "space or control"),
        ("a b", "space or control"),
        ("www\n", "space or control"),
        ("www\r", "space or control"),
        ("www\t", "space or control"),
        ("www\x85", "space or control"),
        ("www\u2028", "space or control"),
        ("a\\000b", "no escapes"),
        ("a\\.b", "no escapes"),
        ("a..b", "not a valid owner name"),
        ("-www", "not a valid owner name"),
        ("www-", "not a valid owner name"),
        ("w$w", "not a valid owner name"),
        ("w;w", "not a valid owner name"),
        ("w(w", "not a valid owner name"),
        ('w"w', "not a valid owner name"),
        ("a.*", "not a valid owner name"),
        ("x" * 64, "not a valid owner name"),
        (".".join(["x" * 63] * 4), "not a valid name in acme."),
        ("ab--cd", "reserved for IDNA"),
        ("xn--zz", "not a valid IDNA A-label"),
    ],
)
def test_bad_owner_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(ZoneDataError, match=message) as caught:
        owner_name(name, ORIGIN)
    assert caught.value.field == "name"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("BOGUS", "unknown record type"),
        ("A\n", "is not a record type"),
        ("ANY", "query type"),
        ("AXFR", "query type"),
        ("OPT", "query type"),
        ("TYPE0", "query type"),
        ("RRSIG", "DNSSEC records are the registry's"),
        ("NSEC3PARAM", "DNSSEC records are the registry's"),
        ("ZONEMD", "DNSSEC records are the registry's"),
        ("SOA", "the registry manages the apex"),
        ("\uff21", "is not a record type"),
    ],
)
def test_bad_types_are_refused(kind: str, message: str) -> None:
    with pytest.raises(ZoneDataError, match=message):
        record_type(kind)


def test_types_are_canonical() -> None:
    assert record_type("a") == "A"
    assert record_type("TYPE1") == "A"
    assert record_type("https") == "HTTPS"


@pytest.mark.parametrize(
    ("rrset", "message"),
    [
        (RecordSet("t", "TXT", 60, ('"a"\n$INCLUDE /etc/passwd',)), "control character"),
        (RecordSet("t", "A", 60, ("192.0.2.1\nfoo 300 IN A 192.0.2.2",)), "control character"),
        (RecordSet("t", "A", 60, ("192.0.2.1\r",)), "control character"),
        (RecordSet("t", "TXT", 60, ('"a\x00b"',)), "control character"),
        (RecordSet("t", "A", 60, ("192.0.2.1 ; hidden",)), "comment"),
        (RecordSet("t", "A", 60, ("192.0.2.1 192.0.2.2",)), "not a valid A value"),
        (RecordSet("t", "A", 60, ("not-an-address",)), "not a valid A value"),
        (RecordSet("t", "AAAA", 60, ("192.0.2.1",)), "not a valid AAAA value"),
        (RecordSet("t", "MX", 60, ("mail.example.",)), "not a valid MX value"),
        (RecordSet("t", "TXT", 60, ('"unterminated',)), "not a valid TXT value"),
        (RecordSet("t", "CNAME", 60, ("a.example.", "b.example.")), "exactly one value"),
        (RecordSet("@", "CNAME", 60, ("a.example.",)), "apex cannot hold a CNAME"),
        (RecordSet("@", "NS", 60, ("ns.example.",)), "manages the apex"),
        (RecordSet("t", "A", 60, ("192.0.2.1", "192.0.2.1")), "given twice"),
        (RecordSet("t", "A", 60, ()), "1 to 100 values"),
        (RecordSet("t", "TXT", 60, tuple(f'"{i}"' for i in range(MAX_VALUES + 1))), "1 to 100"),
        (RecordSet("t", "TXT", 60, ('"' + "x" * 5000 + '"',)), "1 to 4096 characters"),
        (RecordSet("t", "TXT", 60, ("",)), "1 to 4096 characters"),
        (RecordSet("t", "A", -1, ("192.0.2.1",)), "ttl -1"),
        (RecordSet("t", "A", 2**31, ("192.0.2.1",)), "ttl 2147483648"),
        (RecordSet("t", "A", True, ("192.0.2.1",)), "ttl True"),  # type: ignore[arg-type]
        (RecordSet("t", "CNAME", 60, (".".join(c * 63 for c in "xyzw"),)), "not a valid CNAME"),
    ],
)
def test_bad_record_sets_are_refused_naming_the_field(rrset: RecordSet, message: str) -> None:
    with pytest.raises(ZoneDataError, match=message):
        rrset.canonical(ORIGIN)


@pytest.mark.parametrize(
    ("rrsets", "message"),
    [
        ([RecordSet("www", "A", 60, ("192.0.2.1",)), RecordSet("www", "CNAME", 60, ("x.",))],
         "CNAME stands alone"),
        ([RecordSet("Alias", "A", 60, ("192.0.2.1",)), RecordSet("alias", "A", 60, ("192.0.2.2",))],
         "given twice"),
        ([RecordSet("www.acme.", "A", 6, ("192.0.2.1",)), RecordSet("www", "A", 9, ("192.0.2.2",))],
         "given twice"),
    ],
)  # fmt: skip
def test_rules_across_record_sets_of_one_name(rrsets: list[RecordSet], message: str) -> None:
    with pytest.raises(ZoneDataError, match=message):
        check_zone(ORIGIN, rrsets)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("acme", "acme"),
        ("ACME", "acme"),
        ("bücher", "xn--bcher-kva"),
        ("\uff21\uff23\uff2d\uff25", "acme"),  # fullwidth letters
    ],
)
def test_tld_labels_are_canonical(name: str, canonical: str) -> None:
    assert tld_label(name) == canonical


def spec(serial: int) -> ZoneSpec:
    return ZoneSpec(ORIGIN, serial)


# Values of many types, valid and not: what the API may be sent.
VALUES = {
    "A": ["192.0.2.1", "192.0.2.2", "300.1.1.1", "192.0.2.1\n"],
    "AAAA": ["2001:DB8::1", "2001:db8::2", "::ffff:192.0.2.1", "nope"],
    "TXT": ['"hello world"', "bare words", '"a;b"', '"\\010escaped"', "x ; y", '"\x00"'],
    "MX": ["10 mail", "20 Mail.Example.", "mail"],
    "CNAME": ["target.example.", "Other", "two words"],
    "SRV": ["0 5 5060 sip", "0 5 sip"],
    "CAA": ['0 issue "ca.example"', "0 issue"],
    "HTTPS": ['1 . alpn="h3" port=4433 ipv4hint=127.0.0.1', "1 . alpn=h3", "0 svc.example."],
    "TLSA": ["3 1 0 302A300506032B6570032100ABCDEF", "3 1 0 zz"],
    "NS": ["ns.example.", "ns1"],
    "DNAME": ["other.example."],
    "TYPE65280": ["\\# 2 abcd", "\\# 3 ab"],
}
NAMES = ["www", "WWW", "api", "a.b", "@", "mail", "*.dev", "acme.", "www.acme.", "evil.example.",
         "a b", "a\x00b", "sub", "_443._udp.www"]  # fmt: skip


changes = st.dictionaries(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(sorted(VALUES))),
    st.one_of(st.none(), st.lists(st.integers(0, 5), min_size=1, max_size=3)),
    min_size=1,
    max_size=4,
)


def make(key: tuple[str, str], picks: list[int]) -> RecordSet:
    pool = VALUES[key[1]]
    return RecordSet(key[0], key[1], 300, tuple(pool[i % len(pool)] for i in picks))


@settings(max_examples=80, deadline=None)
@given(st.lists(changes, min_size=1, max_size=4))
def test_what_the_rule_accepts_the_full_build_accepts_and_signing_agrees(
    batches: list[dict[tuple[str, str], list[int] | None]],
) -> None:
    """Batch after batch of arbitrary changes: a batch the incremental signer refuses, the full
    build refuses too (and vice versa); one it accepts gives the fully built zone, record for
    record, whose record sets are the canonical ones."""
    current: dict[tuple[str, str], RecordSet] = {}
    zone = build_zone(spec(1), [], KEYS, now=NOW)
    digests = NodeDigests()
    serial = 1
    for batch in batches:
        delta = {k: (make(k, v) if v is not None else None) for k, v in batch.items()}
        try:
            canonical = {}
            for (name, kind), rrset in delta.items():
                key = (owner_name(name, ORIGIN), record_type(kind))
                if key == ("@", "NS"):  # the apex NS is the registry's, to delete as to replace
                    raise ZoneDataError("apex NS")
                canonical[key] = rrset.canonical(ORIGIN) if rrset is not None else None
            after = {k: v for k, v in {**current, **canonical}.items() if v is not None}
            check_zone(ORIGIN, after.values())
        except ZoneDataError:
            accepted = False
        else:
            accepted = True
        try:
            updated = update_zone(zone, spec(serial + 1), delta, KEYS, now=NOW, digests=digests)
        except RegistryError:
            assert not accepted
            continue
        assert accepted
        current = after
        full = build_zone(spec(serial + 1), list(current.values()), KEYS, now=NOW)
        if updated is None:  # delegations: the full build's job
            updated, digests = full, NodeDigests()
        assert zone_records(updated) == zone_records(full)
        serial, zone = serial + 1, updated
        for rrset in current.values():  # canonical forms are fixed points
            assert rrset.canonical(ORIGIN) == rrset


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(VALUES)), st.data())
def test_canonical_values_are_fixed_points(kind: str, data: st.DataObject) -> None:
    value = data.draw(st.sampled_from(VALUES[kind]))
    try:
        once = RecordSet("x", kind, 1, (value,)).canonical(ORIGIN)
    except ZoneDataError:
        return
    assert once.canonical(ORIGIN) == once
    assert "\n" not in once.values[0] and ";" not in once.values[0].replace('"a;b"', "")


service_batches = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(NAMES),
            st.sampled_from(sorted(VALUES)),
            st.one_of(st.none(), st.lists(st.integers(0, 5), min_size=1, max_size=3)),
        ),
        min_size=1,
        max_size=3,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(service_batches)
def test_what_the_registry_accepts_builds_and_equals_its_incremental_zone(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[tuple[str, str, list[int] | None]]],
) -> None:
    """Through ``Registry.patch`` (what the API calls once a body parses): a batch is either
    refused with nothing stored, or stored canonical; then the zone it serves, signed
    incrementally, equals the full build of what it stored, record for record."""
    path = tmp_path_factory.mktemp("registry") / "registry.db"
    registry = Registry.open(path, admin=ADMIN.node_id, clock=lambda: NOW)
    registry.register("acme", OWNER.node_id, "demo")
    try:
        for batch in batches:
            changes = [
                Change(name, kind, "DELETE")
                if picks is None
                else Change(name, kind, "REPLACE", 300, make((name, kind), picks).values)
                for name, kind, picks in batch
            ]
            before = registry.rrsets("acme")
            try:
                registry.patch("acme", changes, signer=OWNER.node_id)
            except RegistryError:
                assert registry.rrsets("acme") == before
                continue
            stored = registry.rrsets("acme")
            assert all(r.canonical(ORIGIN) == r for r in stored)
            info = registry.get_tld("acme")
            spec = ZoneSpec(ORIGIN, info.serial)
            with registry._transaction() as session:
                keys = registry._keys(registry._tld(session, "acme"))
            full = build_zone(spec, stored, keys, now=NOW)
            assert zone_records(registry.zone("acme")) == zone_records(full)
    finally:
        registry.close()
