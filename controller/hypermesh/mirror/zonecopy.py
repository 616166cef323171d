"""A mirror's copy of one zone: taken whole or moved forward by journal increments, and never
served before it checks out against the registry's keys.

Checking a copy means: the DNSKEY RRset matches the DS the registry's signed anchors give for
the zone (``hypermesh.mirror.anchors``); every RRSIG that covers a record set verifies with
that DNSKEY; and the ZONEMD digest (RFC 8976), itself signed, matches the whole zone. A whole
zone is checked record set by record set; an increment only where it changed plus the apex,
because the signed ZONEMD covers every record: a record added, altered or taken away anywhere
without the zone's key makes the digest differ.

Increments are applied copy-on-write: unchanged nodes are shared with the previous copy, and
``NodeDigests`` remembers their digest input, so an increment costs what it changes plus one
pass of SHA-384 over bytes already encoded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import dns.dnssec
import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
from dns.dnssectypes import DSDigest

from hypermesh.errors import HyperMeshError
from hypermesh.registry.errors import RegistryError
from hypermesh.registry.zones import (
    JournalEntry,
    Keyring,
    NodeDigests,
    canonical_order,
    cut_above,
    delegations,
    serial_of,
    verify_node,
)


class BadCopy(HyperMeshError):
    """A zone or an increment that does not check out (or does not apply); the copy it was
    meant for is left as it was."""


@dataclass(slots=True)
class ZoneCopy:
    """One verified zone and what it takes to move it forward cheaply."""

    zone: dns.zone.Zone
    """The zone as served; never edited in place."""
    ds: tuple[str, ...]
    """The DS records it was checked against."""
    digests: NodeDigests = field(default_factory=NodeDigests)
    """Each node's ZONEMD input, carried from one serial to the next."""

    @property
    def serial(self) -> int:
        return serial_of(self.zone)

    @property
    def origin(self) -> dns.name.Name:
        origin = self.zone.origin
        assert origin is not None
        return origin

    @classmethod
    def from_text(
        cls, text: str, origin: str, ds: Sequence[str], *, now: float | None = None
    ) -> ZoneCopy:
        """A whole zone (master-file text) checked in full; ``BadCopy`` when it does not
        parse or check out."""
        try:
            zone = dns.zone.from_text(text, origin=origin, relativize=True, check_origin=True)
        except (dns.exception.DNSException, ValueError) as exc:
            raise BadCopy(f"{origin}: the zone does not parse: {exc}") from None
        copy = cls(zone=zone, ds=tuple(ds))
        copy._check(None, now)
        return copy

    def advanced(self, entries: Iterable[JournalEntry], *, now: float | None = None) -> ZoneCopy:
        """A new copy with ``entries`` applied in order and checked; this copy is unchanged.
        ``BadCopy`` when an entry does not follow on or the result does not check out.

        The entries are merged first (``merged``): what one adds and a later one removes
        (each serial's SOA, ZONEMD and their signatures) is never parsed."""
        entry = merged(entries, serial_of(self.zone))
        if entry is None:
            return self
        zone, touched = _applied(self.zone, entry)
        if serial_of(zone) != entry.to_serial:
            raise BadCopy(
                f"{entry.origin}: the increment to serial {entry.to_serial} leaves the SOA "
                f"at {serial_of(zone)}"
            )
        copy = ZoneCopy(zone=zone, ds=self.ds, digests=self.digests)
        copy._check(touched, now)
        return copy

    def _check(
        self,
        changed: Mapping[dns.name.Name, set[dns.rdatatype.RdataType]] | None,
        now: float | None,
    ) -> None:
        """Check the record sets that ``changed`` (None: all of them) and the whole ZONEMD.
        Record sets an increment did not touch are the very objects already checked."""
        zone, origin = self.zone, self.origin
        apex = zone.nodes.get(dns.name.empty)
        if apex is None:
            raise BadCopy(f"{origin}: the zone has no apex")
        dnskeys = apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        if dnskeys is None:
            raise BadCopy(f"{origin}: the zone has no DNSKEY")
        made = {dns.dnssec.make_ds(origin, key, DSDigest.SHA256).to_text() for key in dnskeys}
        if not made & set(self.ds):
            raise BadCopy(f"{origin}: no DNSKEY matches the DS in the registry's anchors")
        # Signers are relative in a relativized zone: find the keys under both names.
        keyring: Keyring = {origin: dnskeys, dns.name.empty: dnskeys}
        when = time.time() if now is None else now
        cuts = delegations(zone)
        try:
            names = zone.nodes if changed is None else changed
            for name in names:
                node = zone.nodes.get(name)
                if node is not None:
                    only = None if changed is None else changed[name]
                    cut = cut_above(name, cuts)
                    verify_node(origin, name, node, keyring, when, cut, only=only)
        except RegistryError as exc:
            raise BadCopy(str(exc)) from None
        ordered = canonical_order(zone.nodes)
        zonemd = apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.ZONEMD)
        if zonemd is None or len(zonemd) != 1:
            raise BadCopy(f"{origin}: the zone has no single ZONEMD record")
        expected = self.digests.zonemd(zone, ordered, self.serial)
        if zonemd[0].digest != expected.digest or zonemd[0].serial != self.serial:
            raise BadCopy(f"{origin}: the ZONEMD digest does not match the zone")


def merged(entries: Iterable[JournalEntry], serial: int) -> JournalEntry | None:
    """One increment from ``serial`` doing what ``entries`` do in turn (None when there are
    none): a record added by one and removed by a later one (or the other way round) is left
    out. ``BadCopy`` when an entry does not start where the one before it ended."""
    first: JournalEntry | None = None
    last: JournalEntry | None = None
    removed: dict[str, None] = {}
    added: dict[str, None] = {}
    for entry in entries:
        at = serial if last is None else last.to_serial
        if entry.from_serial != at:
            raise BadCopy(
                f"{entry.origin}: the increment starts at serial {entry.from_serial}, "
                f"the copy is at {at}"
            )
        first, last = first or entry, entry
        for line in entry.removed:
            if line in added:
                del added[line]
            else:
                removed[line] = None
        for line in entry.added:
            if line in removed:
                del removed[line]
            else:
                added[line] = None
    if first is None or last is None:
        return None
    return JournalEntry(
        first.origin, first.from_serial, last.to_serial, tuple(removed), tuple(added)
    )


def _applied(
    zone: dns.zone.Zone, entry: JournalEntry
) -> tuple[dns.zone.Zone, dict[dns.name.Name, set[dns.rdatatype.RdataType]]]:
    """``zone`` with ``entry`` applied, sharing every node it does not touch."""
    origin = zone.origin
    assert origin is not None
    new = dns.zone.Zone(origin, relativize=True)
    new.nodes = dict(zone.nodes)
    owned: dict[dns.name.Name, dns.node.Node] = {}
    sets: dict[
        tuple[dns.name.Name, dns.rdatatype.RdataType, dns.rdatatype.RdataType],
        dns.rdataset.Rdataset,
    ] = {}

    def rdataset_for(
        name: dns.name.Name, rdata: dns.rdata.Rdata, ttl: int
    ) -> dns.rdataset.Rdataset:
        covers = rdata.covers()
        key = (name, rdata.rdtype, covers)
        found = sets.get(key)
        if found is None:
            node = owned.get(name)
            if node is None:
                node = owned[name] = dns.node.Node()  # type: ignore[no-untyped-call]
                old = new.nodes.get(name)
                if old is not None:
                    node.rdatasets.extend(old.rdatasets)
                new.nodes[name] = node
            found = dns.rdataset.Rdataset(dns.rdataclass.IN, rdata.rdtype, covers, ttl)
            current = node.get_rdataset(dns.rdataclass.IN, rdata.rdtype, covers)
            if current is not None:
                found.update(current)  # type: ignore[no-untyped-call]
                found.ttl = current.ttl
            node.replace_rdataset(found)
            sets[key] = found
        return found

    for removing, lines in ((True, entry.removed), (False, entry.added)):
        for line in lines:
            name, ttl, rdata = _parse(origin, line)
            rdataset = rdataset_for(name, rdata, ttl)
            if removing:
                if rdata not in rdataset:
                    raise BadCopy(
                        f"{entry.origin}: the increment removes a record not held: {line}"
                    )
                rdataset.discard(rdata)  # type: ignore[no-untyped-call]
            else:
                rdataset.add(rdata, ttl)
                rdataset.ttl = ttl
    for (name, rdtype, covers), rdataset in sets.items():
        if not rdataset:
            owned[name].delete_rdataset(dns.rdataclass.IN, rdtype, covers)
    for name, node in owned.items():
        if not node.rdatasets:
            del new.nodes[name]
    changed: dict[dns.name.Name, set[dns.rdatatype.RdataType]] = {}
    for name, rdtype, covers in sets:
        # A changed signature calls for checking the set it covers.
        changed.setdefault(name, set()).add(covers if rdtype == dns.rdatatype.RRSIG else rdtype)
    return new, changed


def _parse(origin: dns.name.Name, line: str) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
    """``name ttl IN TYPE rdata`` (names relative to ``origin``) as the journal writes it."""
    try:
        owner, ttl, rdclass, rdtype, text = line.split(None, 4)
        if rdclass != "IN":
            raise ValueError(f"class {rdclass}")
        name = dns.name.from_text(owner, None) if owner != "@" else dns.name.empty
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rdtype),
            text,
            origin=origin,
            relativize=True,
            relativize_to=origin,
        )
        return name, int(ttl), rdata
    except (dns.exception.DNSException, ValueError) as exc:
        raise BadCopy(
            f"{origin}: a record in the increment does not parse ({exc}): {line}"
        ) from None
