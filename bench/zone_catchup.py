"""What a mirror's zone copy costs to move forward: increments applied one at a time (a mirror
told of each serial as it comes) against the same increments merged into one (a mirror catching
up after a partition, or woken once for a burst of registrations), in one run.

A signed zone of ``--records`` TXT records is built, then ``--increments`` serials each adding
one record (as a node registering does: its record, its NSEC and the apex's SOA, ZONEMD and
signatures change); ``ZoneCopy.advanced`` takes the copy from the first serial to the last:

  one at a time  ``advanced([entry])`` per serial, each checked (signatures of what changed,
                 and the ZONEMD over the whole zone)
  all at once    ``advanced(entries)``: merged first (``zonecopy.merged``: what one serial adds
                 and the next removes is never parsed), applied and checked once

Each figure is the median CPU time of ``--repeat`` runs. Run by hand::

    .venv/bin/python bench/zone_catchup.py
    .venv/bin/python bench/zone_catchup.py --records 2000 --increments 200
"""

from __future__ import annotations

import argparse
import statistics
import time

from hypermesh.mirror.zonecopy import ZoneCopy, merged
from hypermesh.registry.zones import (
    JournalEntry,
    NodeDigests,
    RecordSet,
    ZoneKeys,
    ZoneSpec,
    build_zone,
    diff_zones,
    ds_records,
    update_zone,
)

NOW = 1_800_000_000
ORIGIN = "acme."


def spec(serial: int) -> ZoneSpec:
    return ZoneSpec("acme", serial, glue={"ns1": ("192.0.2.1",)})


def txt(i: int) -> str:
    """A value about the size of a node record in the directory (three 200-byte strings)."""
    return " ".join(f'"{c * 199}{i % 10}"' for c in "xyz")


def zones(records: int, increments: int) -> tuple[str, tuple[str, ...], list[JournalEntry]]:
    keys = ZoneKeys.generate()
    first = [RecordSet(f"n{i}", "TXT", 300, (txt(i),)) for i in range(records)]
    zone, digests = build_zone(spec(1), first, keys, now=NOW), NodeDigests()
    base, entries = zone.to_text(), []
    for serial in range(2, increments + 2):
        added = {(f"m{serial}", "TXT"): RecordSet(f"m{serial}", "TXT", 300, (txt(serial),))}
        new = update_zone(zone, spec(serial), added, keys, now=NOW, digests=digests)
        assert new is not None
        entries.append(diff_zones(zone, new))
        zone = new
    return base, tuple(ds_records(keys, ORIGIN)), entries


def cpu(work: object) -> float:
    started = time.process_time()
    work()  # type: ignore[operator]
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200, help="records in the zone (200)")
    parser.add_argument("--increments", type=int, default=50, help="serials to catch up (50)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (5)")
    args = parser.parse_args()
    base, ds, entries = zones(args.records, args.increments)
    copy = ZoneCopy.from_text(base, ORIGIN, ds, now=NOW)

    def one_at_a_time() -> None:
        moved = copy
        for entry in entries:
            moved = moved.advanced([entry], now=NOW)

    def all_at_once() -> None:
        copy.advanced(entries, now=NOW)

    figures: dict[str, list[float]] = {"one at a time": [], "all at once (merged)": []}
    for _ in range(args.repeat):  # interleaved: a slow spell hits both alike
        figures["one at a time"].append(cpu(one_at_a_time))
        figures["all at once (merged)"].append(cpu(all_at_once))
    one = merged(entries, copy.serial)
    assert one is not None
    lines = sum(len(e.removed) + len(e.added) for e in entries)
    print(
        f"zone catch-up: {args.records} records, {args.increments} increments "
        f"({lines} lines; {len(one.removed) + len(one.added)} once merged)"
    )
    for label, values in figures.items():
        print(f"  {label:22} {statistics.median(values) * 1000:8.1f} ms CPU (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
