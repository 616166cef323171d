"""A mirror's zone copy: taken whole or by increments, and refused when it does not check out."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.mirror.zonecopy import BadCopy, ZoneCopy, merged
from hypermesh.registry.zones import (
    JournalEntry,
    NodeDigests,
    RecordSet,
    ZoneKeys,
    ZoneSpec,
    build_zone,
    diff_zones,
    ds_records,
    serial_of,
    update_zone,
    zone_records,
)

NOW = 1_800_000_000
KEYS = ZoneKeys.generate()
DS = tuple(ds_records(KEYS, "acme."))
RECORDS = [
    RecordSet("www", "A", 300, ("192.0.2.10",)),
    RecordSet("www", "TXT", 300, ('"hello"',)),
    RecordSet("mail", "MX", 300, ("10 mx.example.net.",)),
]


def spec(serial: int) -> ZoneSpec:
    return ZoneSpec("acme", serial, glue={"ns1": ("192.0.2.1",)})


def first_copy() -> ZoneCopy:
    zone = build_zone(spec(1), RECORDS, KEYS, now=NOW)
    return ZoneCopy.from_text(zone.to_text(), "acme.", DS, now=NOW)


def test_a_whole_zone_checks_out_and_a_wrong_ds_is_refused() -> None:
    copy = first_copy()
    assert copy.serial == 1
    other = tuple(ds_records(ZoneKeys.generate(), "acme."))
    zone = build_zone(spec(1), RECORDS, KEYS, now=NOW)
    with pytest.raises(BadCopy, match="no DNSKEY matches the DS"):
        ZoneCopy.from_text(zone.to_text(), "acme.", other, now=NOW)


def test_an_altered_record_in_a_whole_zone_is_refused() -> None:
    text = build_zone(spec(1), RECORDS, KEYS, now=NOW).to_text()
    assert "192.0.2.10" in text
    with pytest.raises(BadCopy, match=r"www\.acme\. A"):
        ZoneCopy.from_text(text.replace("192.0.2.10", "203.0.113.66"), "acme.", DS, now=NOW)


changes = st.lists(
    st.tuples(
        st.sampled_from(["www", "mail", "new", "a.b", "zz"]),
        st.sampled_from(["A", "TXT"]),
        st.one_of(st.none(), st.integers(1, 250)),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None)
@given(st.lists(changes, min_size=1, max_size=3))
def test_increments_move_the_copy_to_exactly_the_registry_zone(batches: list) -> None:
    copy = start = first_copy()
    zone, digests = build_zone(spec(1), RECORDS, KEYS, now=NOW), NodeDigests()
    entries: list[JournalEntry] = []
    for serial, batch in enumerate(batches, start=2):
        changed = {
            (name, rdtype): None
            if last is None
            else RecordSet(
                name, rdtype, 300, (f"192.0.2.{last}" if rdtype == "A" else f'"{last}"',)
            )
            for name, rdtype, last in batch
        }
        new = update_zone(zone, spec(serial), changed, KEYS, now=NOW, digests=digests)
        assert new is not None
        entry = diff_zones(zone, new)
        entries.append(entry)
        before = copy
        copy = copy.advanced([entry], now=NOW)
        assert zone_records(copy.zone) == zone_records(new)
        assert before.serial == serial - 1  # the old copy is left as it was
        zone = new
    # All at once (merged into one increment first): the same zone, parsing fewer lines.
    at_once = start.advanced(entries, now=NOW)
    assert zone_records(at_once.zone) == zone_records(zone) and at_once.serial == serial_of(zone)
    one = merged(entries, 1)
    assert one is not None and (one.from_serial, one.to_serial) == (1, len(batches) + 1)
    if len(entries) > 1:  # each serial's SOA and ZONEMD (and signatures) in between drop out
        lines = sum(len(e.removed) + len(e.added) for e in entries)
        assert len(one.removed) + len(one.added) < lines


def test_an_increment_that_does_not_check_out_is_refused_and_the_copy_kept() -> None:
    copy = first_copy()
    zone = build_zone(spec(1), RECORDS, KEYS, now=NOW)
    new = update_zone(
        zone, spec(2), {("www", "A"): RecordSet("www", "A", 300, ("192.0.2.11",))}, KEYS, now=NOW
    )
    assert new is not None
    entry = diff_zones(zone, new)
    forged = dataclasses.replace(
        entry, added=tuple(line.replace("192.0.2.11", "203.0.113.66") for line in entry.added)
    )
    with pytest.raises(BadCopy, match=r"www\.acme\. A"):
        copy.advanced([forged], now=NOW)
    # A record slipped in with no signature of its own is caught by the signature check, one
    # with a replayed signature by the signed ZONEMD.
    sneaky = dataclasses.replace(entry, added=(*entry.added, "evil 300 IN A 203.0.113.66"))
    with pytest.raises(BadCopy, match=r"evil\.acme\. A: not signed"):
        copy.advanced([sneaky], now=NOW)
    old_sig = [line for line in zone_records(zone) if line.startswith("www 300 IN RRSIG A ")]
    replayed = dataclasses.replace(
        entry,
        removed=tuple(r for r in entry.removed if " RRSIG A " not in r),
        added=tuple(a for a in entry.added if " RRSIG A " not in a and " A 192" not in a),
    )
    assert old_sig
    with pytest.raises(BadCopy):
        copy.advanced([replayed], now=NOW)
    assert copy.serial == 1
    assert copy.advanced([entry], now=NOW).serial == 2


def test_an_increment_that_does_not_follow_on_is_refused() -> None:
    copy = first_copy()
    gap = [JournalEntry("acme.", 1, 2, (), ()), JournalEntry("acme.", 3, 4, (), ())]
    with pytest.raises(BadCopy, match="starts at serial 3, the copy is at 2"):
        copy.advanced(gap, now=NOW)
    assert copy.advanced([], now=NOW) is copy
    with pytest.raises(BadCopy, match="starts at serial 5"):
        copy.advanced([JournalEntry("acme.", 5, 6, (), ())], now=NOW)
    with pytest.raises(BadCopy, match="does not parse"):
        copy.advanced([JournalEntry("acme.", 1, 2, (), ("www 300 IN A not-an-address",))], now=NOW)
    with pytest.raises(BadCopy, match="removes a record not held"):
        copy.advanced([JournalEntry("acme.", 1, 2, ("www 300 IN A 192.0.2.99",), ())], now=NOW)
