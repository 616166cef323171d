"""A TLD's zone: built from record sets, signed with DNSSEC (Ed25519, RFC 8080), digested with
ZONEMD (RFC 8976), and diffed serial to serial into a journal that mirrors can apply. A zone
that is never transferred whole (a public network's node directory, looked up name by name)
goes without ZONEMD (``ZoneSpec.zonemd``): the digest covers the whole zone, so keeping it costs
a pass over every record at each serial, and it protects only whole-zone copies.

dnspython does the DNS work: record parsing, ``dns.dnssec.sign_zone`` (KSK over the DNSKEY RRset,
ZSK over the rest, an NSEC chain), ``Zone.compute_digest`` and ``Zone.verify_digest``. Pure:
time comes in as ``now`` (unix seconds).
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dns.dnssectypes import Algorithm, DSDigest
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.NSEC import NSEC, Bitmap
from dns.rdtypes.ANY.ZONEMD import ZONEMD
from dns.zonetypes import DigestHashAlgorithm, DigestScheme

from hypermesh.registry.errors import RegistryError
from hypermesh.zonedata import (
    APEX,
    ZoneDataError,
    check_owner,
    check_zone,
    owner_name,
    record_type,
)
from hypermesh.zonedata import (
    RecordSet as RecordSet,  # re-exported: a zone's record sets are the one rule's
)

SIGNATURE_LIFETIME = 14 * 86400
"""Seconds an RRSIG stays valid."""
RESIGN_AFTER = SIGNATURE_LIFETIME // 2
"""Seconds after a zone's last full signing when it is signed in full again (a change in
between re-signs only what it touched; the registry's sweep re-signs a zone that does not
change), so no signature served is ever within a week of its expiry."""
CLOCK_SKEW = 3600
"""Signatures start this long before ``now``, for validators whose clocks run behind."""


@dataclass(frozen=True, slots=True)
class ZoneKeys:
    """A zone's key-signing and zone-signing keys (Ed25519)."""

    ksk: Ed25519PrivateKey = field(repr=False)
    zsk: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> ZoneKeys:
        return cls(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    def dnskeys(self) -> tuple[DNSKEY, DNSKEY]:
        """(KSK, ZSK) as DNSKEY records: flags 257 (SEP) and 256, algorithm 15."""
        ksk = dns.dnssec.make_dnskey(self.ksk.public_key(), Algorithm.ED25519, flags=257)
        zsk = dns.dnssec.make_dnskey(self.zsk.public_key(), Algorithm.ED25519, flags=256)
        return ksk, zsk

    def to_pem(self) -> tuple[bytes, bytes]:
        """Both private keys, PKCS#8 PEM (store them as carefully as a node's key)."""
        encode = serialization.Encoding.PEM
        fmt = serialization.PrivateFormat.PKCS8
        none = serialization.NoEncryption()
        return (
            self.ksk.private_bytes(encode, fmt, none),
            self.zsk.private_bytes(encode, fmt, none),
        )

    @classmethod
    def from_pem(cls, ksk: bytes, zsk: bytes) -> ZoneKeys:
        keys = [serialization.load_pem_private_key(pem, password=None) for pem in (ksk, zsk)]
        if not all(isinstance(k, Ed25519PrivateKey) for k in keys):
            raise RegistryError("zone keys must be Ed25519")
        return cls(keys[0], keys[1])  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """What a zone's apex says: serial, name servers and their addresses, timings."""

    origin: str
    serial: int
    nameservers: tuple[str, ...] = ("ns1",)
    glue: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Addresses of nameservers inside the zone (``ns1`` → ``("192.0.2.1",)``)."""
    default_ttl: int = 3600
    dnssec: bool = True
    refresh: int = 7200
    retry: int = 3600
    expire: int = 1209600
    minimum: int = 300
    """Negative-caching TTL (RFC 2308)."""
    zonemd: bool = True
    """Whether the apex holds a ZONEMD (RFC 8976). Off only for a zone nobody copies whole:
    its records are checked one by one with DNSSEC, and a digest over the whole zone would
    make every change cost the whole zone."""

    @property
    def name(self) -> dns.name.Name:
        return dns.name.from_text(self.origin)


def build_zone(
    spec: ZoneSpec, rrsets: Iterable[RecordSet], keys: ZoneKeys | None, *, now: int
) -> dns.zone.Zone:
    """The complete zone: SOA, NS and glue at the apex, the records, and (with ``dnssec``)
    DNSKEY, NSEC and RRSIGs; a ZONEMD (SHA-384, SIMPLE), itself signed, unless the spec
    turns it off."""
    origin = spec.name
    zone = dns.zone.Zone(origin, relativize=True)
    soa = (
        f"{spec.nameservers[0]} hostmaster {spec.serial} {spec.refresh} {spec.retry} "
        f"{spec.expire} {spec.minimum}"
    )
    apex: list[RecordSet] = [
        RecordSet("@", "SOA", spec.default_ttl, (soa,)),
        RecordSet("@", "NS", spec.default_ttl, spec.nameservers),
    ]
    for server, addresses in spec.glue.items():
        v4 = tuple(a for a in addresses if ":" not in a)
        v6 = tuple(a for a in addresses if ":" in a)
        apex += [RecordSet(server, "A", spec.default_ttl, v4)] if v4 else []
        apex += [RecordSet(server, "AAAA", spec.default_ttl, v6)] if v6 else []
    try:
        owned = check_zone(origin.to_text(), rrsets)
    except ZoneDataError as exc:
        raise RegistryError(f"{origin}: {exc}") from None
    for rrset in [*apex, *owned]:
        zone.replace_rdataset(_relative(rrset.name), rrset.rdataset(origin))
    if spec.zonemd:
        _add_zonemd(zone, spec.serial, placeholder=True)
    if spec.dnssec:
        if keys is None:
            raise RegistryError(f"{spec.origin}: DNSSEC is on but the zone has no keys")
        ksk, zsk = keys.dnskeys()
        dns.dnssec.sign_zone(
            zone,
            keys=[(keys.ksk, ksk), (keys.zsk, zsk)],
            dnskey_ttl=spec.default_ttl,
            inception=now - CLOCK_SKEW,
            expiration=now + SIGNATURE_LIFETIME,
        )
    if spec.zonemd:
        _add_zonemd(zone, spec.serial)
    if spec.dnssec and spec.zonemd:
        assert keys is not None
        _resign(zone, dns.rdatatype.ZONEMD, keys, now)
    return zone


def _relative(name: str) -> dns.name.Name:
    """The relative ``dns.name.Name`` of a canonical owner name."""
    return dns.name.empty if name == APEX else dns.name.from_text(name, None)


def _add_zonemd(zone: dns.zone.Zone, serial: int, *, placeholder: bool = False) -> None:
    """The apex ZONEMD: a placeholder before signing (so the NSEC bitmap lists it), the real
    digest after (RFC 8976 §3.1: the digest covers the signatures, not the ZONEMD RRset)."""
    soa = zone.get_rdataset("@", dns.rdatatype.SOA)
    assert soa is not None
    if placeholder:
        record = ZONEMD(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN,
            dns.rdatatype.ZONEMD,
            serial,
            DigestScheme.SIMPLE,
            DigestHashAlgorithm.SHA384,
            bytes(48),
        )
    else:
        record = zone.compute_digest(DigestHashAlgorithm.SHA384)
    with zone.writer() as txn:
        txn.replace(dns.name.empty, soa.ttl, record)


def _resign(zone: dns.zone.Zone, rdtype: dns.rdatatype.RdataType, keys: ZoneKeys, now: int) -> None:
    """Sign the apex ``rdtype`` RRset again with the ZSK (after it changed)."""
    origin = zone.origin
    assert origin is not None
    rdataset = zone.find_rdataset("@", rdtype)
    rrset = dns.rrset.from_rdata_list(origin, rdataset.ttl, list(rdataset))
    _, zsk = keys.dnskeys()
    rrsig = dns.dnssec.sign(
        rrset,
        keys.zsk,
        origin,
        zsk,
        inception=now - CLOCK_SKEW,
        expiration=now + SIGNATURE_LIFETIME,
    )
    node = zone.find_node("@")
    sigs = node.find_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype, create=True)
    sigs.clear()  # type: ignore[no-untyped-call]
    sigs.add(rrsig, rdataset.ttl)


def ds_records(keys: ZoneKeys, origin: str) -> list[str]:
    """The DS record of the zone's KSK (SHA-256), to show the owner and to anchor trust."""
    ksk, _ = keys.dnskeys()
    return [dns.dnssec.make_ds(origin, ksk, DSDigest.SHA256).to_text()]


Keyring = dict[dns.name.Name, dns.node.Node | dns.rdataset.Rdataset]
"""DNSKEY RRsets by zone name, as ``dns.dnssec.validate`` takes them."""


def verify_zone(
    zone: dns.zone.Zone,
    ds: Iterable[str] = (),
    *,
    now: float | None = None,
    digest: bool = True,
) -> None:
    """Check a zone before trusting it: the DNSKEY RRset matches ``ds`` (when given), every
    RRSIG verifies at ``now`` (default: the clock), and the ZONEMD digest matches. With
    ``digest`` False (a zone built without ZONEMD, never copied whole) a zone without ZONEMD
    passes on its signatures alone; one that has a ZONEMD must still match it. Raises
    ``RegistryError``."""
    origin = zone.origin
    assert origin is not None
    dnskeys = zone.get_rdataset("@", dns.rdatatype.DNSKEY)
    if dnskeys is None:
        raise RegistryError(f"{origin}: the zone has no DNSKEY")
    anchors = list(ds)
    if anchors:
        made = {dns.dnssec.make_ds(origin, key, DSDigest.SHA256).to_text() for key in dnskeys}
        if not made & set(anchors):
            raise RegistryError(f"{origin}: no DNSKEY matches the trusted DS")
    # Signers are relative in a relativized zone: find the keys under both names.
    keyring: Keyring = {origin: dnskeys, dns.name.empty: dnskeys}
    when = time.time() if now is None else now
    cuts = delegations(zone)
    for name, node in zone.nodes.items():
        verify_node(origin, name, node, keyring, when, cut_above(name, cuts))
    if not digest and zone.get_rdataset("@", dns.rdatatype.ZONEMD) is None:
        return
    try:
        zone.verify_digest()
    except dns.zone.NoDigest:
        raise RegistryError(f"{origin}: the zone has no ZONEMD") from None
    except dns.zone.DigestVerificationFailure as exc:
        raise RegistryError(f"{origin}: ZONEMD does not match the zone: {exc}") from None


def delegations(zone: dns.zone.Zone) -> set[dns.name.Name]:
    """The (relative) names below the apex that hold NS: zone cuts."""
    ns = dns.rdatatype.NS
    return {
        name
        for name, node in zone.nodes.items()
        if len(name) and node.get_rdataset(dns.rdataclass.IN, ns) is not None
    }


def cut_above(name: dns.name.Name, cuts: set[dns.name.Name]) -> dns.name.Name | None:
    """The zone cut at or above the relative ``name``, if any."""
    while len(name):
        if name in cuts:
            return name
        name = name.parent()
    return None


def verify_node(
    origin: dns.name.Name,
    name: dns.name.Name,
    node: dns.node.Node,
    keyring: Keyring,
    now: float,
    cut: dns.name.Name | None = None,
    *,
    only: set[dns.rdatatype.RdataType] | None = None,
) -> None:
    """Every signed record set at the relative ``name`` verifies with ``keyring`` at ``now``;
    ``RegistryError`` naming the first that does not. At a zone cut only DS and NSEC are
    signed, and below one nothing is (glue): the ZONEMD digest alone covers those. With
    ``only``, just the record sets of those types."""
    if cut is not None and cut != name:
        return
    owner = name.derelativize(origin)
    for rdataset in node:
        if rdataset.rdtype == dns.rdatatype.RRSIG:
            continue
        if cut is not None and rdataset.rdtype not in (dns.rdatatype.DS, dns.rdatatype.NSEC):
            continue
        if only is not None and rdataset.rdtype not in only:
            continue
        what = f"{owner} {dns.rdatatype.to_text(rdataset.rdtype)}"
        sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
        if sigs is None:
            raise RegistryError(f"{what}: not signed")
        rrset = dns.rrset.from_rdata_list(owner, rdataset.ttl, list(rdataset))
        sigset = dns.rrset.from_rdata_list(owner, sigs.ttl, list(sigs))
        try:
            dns.dnssec.validate(rrset, sigset, keyring, origin=origin, now=now)
        except dns.exception.ValidationFailure as exc:
            raise RegistryError(f"{what}: {exc}") from None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """What changed from one serial to the next, as text RRs (IXFR's spirit, RFC 1995)."""

    origin: str
    from_serial: int
    to_serial: int
    removed: tuple[str, ...]
    added: tuple[str, ...]


def zone_records(zone: dns.zone.Zone, names: Iterable[dns.name.Name] | None = None) -> set[str]:
    """Every record of ``zone`` (or of the given owner ``names``) as one text line, names
    relative to the origin."""
    out: set[str] = set()
    nodes = zone.nodes.items() if names is None else ((n, zone.nodes.get(n)) for n in names)
    for name, node in nodes:
        for rdataset in node or ():
            for rdata in rdataset:
                out.add(
                    f"{name} {rdataset.ttl} IN {dns.rdatatype.to_text(rdataset.rdtype)} "
                    f"{rdata.to_text(origin=zone.origin, relativize=True)}"
                )
    return out


def serial_of(zone: dns.zone.Zone) -> int:
    soa = zone.get_rdataset("@", dns.rdatatype.SOA)
    assert soa is not None
    return int(soa[0].serial)


def diff_zones(
    old: dns.zone.Zone, new: dns.zone.Zone, names: Iterable[dns.name.Name] | None = None
) -> JournalEntry:
    """The journal entry that turns ``old`` into ``new``. Names whose node is the very same
    object in both (what ``update_zone`` shares) are skipped without a look; with ``names``
    (the only ones that may differ, as ``apply_rdatasets`` reports them), only those are
    looked at."""
    candidates = old.nodes.keys() | new.nodes.keys() if names is None else set(names)
    differ = [n for n in candidates if old.nodes.get(n) is not new.nodes.get(n)]
    before, after = zone_records(old, differ), zone_records(new, differ)
    return JournalEntry(
        origin=str(new.origin),
        from_serial=serial_of(old),
        to_serial=serial_of(new),
        removed=tuple(sorted(before - after)),
        added=tuple(sorted(after - before)),
    )


def apply_journal(zone: dns.zone.Zone, entry: JournalEntry) -> dns.zone.Zone:
    """A new zone: ``zone`` with ``entry`` applied (``zone`` itself is left as it was)."""
    if serial_of(zone) != entry.from_serial:
        raise RegistryError(
            f"{entry.origin}: journal entry starts at serial {entry.from_serial}, "
            f"the zone is at {serial_of(zone)}"
        )
    records = (zone_records(zone) - set(entry.removed)) | set(entry.added)
    text = "\n".join(sorted(records)) + "\n"
    return dns.zone.from_text(text, origin=zone.origin, relativize=True, check_origin=True)


# -- incremental signing ------------------------------------------------------------------------

Changes = Mapping[tuple[str, str], "RecordSet | None"]
"""Record sets by (name, TYPE): the new set, or None where the set is deleted."""


def update_zone(
    old: dns.zone.Zone,
    spec: ZoneSpec,
    changes: Changes,
    keys: ZoneKeys,
    *,
    now: int,
    digests: NodeDigests | None = None,
    changed: set[dns.name.Name] | None = None,
) -> dns.zone.Zone | None:
    """``old`` with ``changes`` applied and the new ``spec.serial``, signing only what changed:
    the changed record sets, the NSEC records around them, SOA and ZONEMD. Everything else,
    signatures included, is shared with ``old``, which is left as it was (copy on write).

    The result equals ``build_zone`` of the same record sets at the same ``now``, record for
    record. Returns None where this path does not apply and the caller must build the whole
    zone: an unsigned zone, or delegations (NS below the apex) on either side of the change,
    whose signing rules (glue unsigned, no NSEC below a cut) the full build owns.

    ``digests`` carries the ZONEMD input of unchanged nodes from one serial to the next, so
    that the digest, which covers the whole zone, encodes only what changed; it also remembers
    that ``old`` holds no delegation, so that a batch does not look at every node to learn it.
    ``changed`` is given the names whose nodes differ from ``old``'s (for ``diff_zones``).
    """
    origin = spec.name
    checked = _checked_changes(origin.to_text(), changes)
    if not spec.dnssec or _adds_delegation(checked):
        return None
    if (digests is None or digests.undelegated is not old) and _has_delegation(old):
        return None
    _check_owners(old, checked)
    parsed = {
        (_relative(owner), dns.rdatatype.from_text(kind)): (
            None if rrset is None else rrset.rdataset(origin)
        )
        for (owner, kind), rrset in checked.items()
    }
    digests = digests or NodeDigests()
    new = apply_rdatasets(old, spec, parsed, keys, now=now, digests=digests, changed=changed)
    digests.undelegated = new  # no NS below the apex before, none added
    return new


Parsed = Mapping[tuple[dns.name.Name, dns.rdatatype.RdataType], "dns.rdataset.Rdataset | None"]
"""Record sets by (relative owner name, type), parsed: the new set, or None to delete it."""


def apply_rdatasets(
    old: dns.zone.Zone,
    spec: ZoneSpec,
    changes: Parsed,
    keys: ZoneKeys,
    *,
    now: int,
    digests: NodeDigests | None = None,
    changed: set[dns.name.Name] | None = None,
) -> dns.zone.Zone:
    """``update_zone`` of record sets already parsed and checked: the caller vouches that they
    keep the zone's rules (no delegation, no CNAME beside other data). The registry's own zones
    (the node directory) change through it, without a round trip through zone-file text.
    ``changed`` is given the names whose nodes differ from ``old``'s (for ``diff_zones``)."""
    origin = spec.name
    zone = dns.zone.Zone(origin, relativize=True)
    zone.nodes = dict(old.nodes)
    owned: set[dns.name.Name] = set()
    signer = _Signer(keys, origin, now)

    def own(name: dns.name.Name) -> dns.node.Node:
        if name not in owned:
            fresh = dns.node.Node()  # type: ignore[no-untyped-call]
            existing = zone.nodes.get(name)
            if existing is not None:
                fresh.rdatasets.extend(existing.rdatasets)
            zone.nodes[name] = fresh
            owned.add(name)
        return zone.nodes[name]

    touched: set[dns.name.Name] = set()
    for (name, rdtype), rdataset in changes.items():
        node = own(name)
        touched.add(name)
        if rdataset is None:
            node.delete_rdataset(dns.rdataclass.IN, rdtype)
            node.delete_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
        else:
            node.replace_rdataset(rdataset)
            node.replace_rdataset(signer.sign(name, rdataset))
        if not any(r.rdtype not in (dns.rdatatype.RRSIG, dns.rdatatype.NSEC) for r in node):
            del zone.nodes[name]
            owned.discard(name)
    soa = old.find_rdataset("@", dns.rdatatype.SOA)
    apex = own(dns.name.empty)
    new_soa = dns.rdataset.from_rdata(soa.ttl, soa[0].replace(serial=spec.serial))
    apex.replace_rdataset(new_soa)
    apex.replace_rdataset(signer.sign(dns.name.empty, new_soa))
    if _switch_zonemd(apex, spec):
        touched.add(dns.name.empty)  # the apex NSEC lists ZONEMD, or no longer does

    digests = digests or NodeDigests()
    known, digests.order = digests.order, None  # until the new order is whole
    ordered = known.moved(zone, touched) if known is not None and known.zone is old else None
    ordered = ordered or _Order.of(zone)
    names, order = ordered.names, ordered.keys
    nsec_ttl = soa[0].minimum
    for name in touched:
        at = bisect.bisect_left(order, _canonical(name))
        if name in zone.nodes:
            _refresh_nsec(zone, own, signer, names[at], names[(at + 1) % len(names)], nsec_ttl)
        _refresh_nsec(zone, own, signer, names[at - 1], names[at % len(names)], nsec_ttl)

    ordered.refresh(owned)
    digests.order = ordered
    if spec.zonemd:
        digest = ordered.zonemd(spec.serial)
        zonemd = dns.rdataset.from_rdata(soa.ttl, digest)
        apex.replace_rdataset(zonemd)
        apex.replace_rdataset(signer.sign(dns.name.empty, zonemd))
    if changed is not None:
        changed |= owned | touched
    return zone


def _switch_zonemd(apex: dns.node.Node, spec: ZoneSpec) -> bool:
    """Make the (owned) apex hold a ZONEMD placeholder exactly when ``spec`` wants a digest
    (the real one is set once the NSEC chain is done); whether that changed its types."""
    held = apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.ZONEMD) is not None
    if held == spec.zonemd:
        return False
    if spec.zonemd:
        placeholder = ZONEMD(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN,
            dns.rdatatype.ZONEMD,
            spec.serial,
            DigestScheme.SIMPLE,
            DigestHashAlgorithm.SHA384,
            bytes(48),
        )
        apex.replace_rdataset(dns.rdataset.from_rdata(spec.default_ttl, placeholder))
    else:
        apex.delete_rdataset(dns.rdataclass.IN, dns.rdatatype.ZONEMD)
        apex.delete_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.ZONEMD)
    return True


def _checked_changes(origin: str, changes: Changes) -> dict[tuple[str, str], RecordSet | None]:
    """``changes`` with canonical keys and record sets (``hypermesh.zonedata``'s rule, the one
    ``build_zone`` applies); ``RegistryError`` for the first that breaks it."""
    out: dict[tuple[str, str], RecordSet | None] = {}
    try:
        for (owner, kind), rrset in changes.items():
            key = (owner_name(owner, origin), record_type(kind))
            if key == (APEX, "NS"):
                raise ZoneDataError("@ NS: the registry manages the apex SOA and NS", "type")
            if key in out:
                raise ZoneDataError(f"{key[0]} {key[1]} is changed twice in one batch")
            if rrset is not None:
                rrset = rrset.canonical(origin)
                if rrset.key != key:
                    raise ZoneDataError(f"the change of {key[0]} {key[1]} holds {rrset.key}")
            out[key] = rrset
    except ZoneDataError as exc:
        raise RegistryError(f"{origin}: {exc}") from None
    return out


def _check_owners(old: dns.zone.Zone, changes: Mapping[tuple[str, str], RecordSet | None]) -> None:
    """The rules across the record sets of each changed name, on the types it will hold
    (dnspython would silently drop the other data beside a CNAME: refuse instead)."""
    after: dict[str, set[str]] = {}
    for owner, _ in changes:
        if owner not in after:
            node = old.nodes.get(_relative(owner))
            after[owner] = {dns.rdatatype.to_text(r.rdtype) for r in node or ()}
    for (owner, kind), rrset in changes.items():
        (after[owner].discard if rrset is None else after[owner].add)(kind)
    try:
        for owner, types in after.items():
            check_owner(owner, types)
    except ZoneDataError as exc:
        raise RegistryError(f"{old.origin}: {exc}") from None


def _adds_delegation(changes: Changes) -> bool:
    return any(t == "NS" and n != APEX for n, t in changes)


def _has_delegation(old: dns.zone.Zone) -> bool:
    ns = dns.rdatatype.NS
    return any(
        len(name) and any(r.rdtype == ns for r in node.rdatasets)  # the apex's name is empty
        for name, node in old.nodes.items()
    )


def canonical_order(names: Iterable[dns.name.Name]) -> list[dns.name.Name]:
    """Relative owner names in RFC 4034 canonical order (the order ZONEMD and NSEC use)."""
    return sorted(names, key=_canonical)


def _canonical(name: dns.name.Name) -> tuple[bytes, ...]:
    """RFC 4034 §6.1 canonical order of names under one origin, as a sort key."""
    return tuple(label.lower() for label in reversed(name.labels))


class _Signer:
    """ZSK signatures (KSK for DNSKEY) over relative names, as ``sign_zone`` makes them."""

    def __init__(self, keys: ZoneKeys, origin: dns.name.Name, now: int) -> None:
        self.keys, self.origin = keys, origin
        self.ksk, self.zsk = keys.dnskeys()
        self.inception, self.expiration = now - CLOCK_SKEW, now + SIGNATURE_LIFETIME

    def sign(self, name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rdataset.Rdataset:
        rrset = dns.rrset.from_rdata_list(
            name.derelativize(self.origin), rdataset.ttl, list(rdataset)
        )
        use_ksk = rdataset.rdtype == dns.rdatatype.DNSKEY
        rrsig = dns.dnssec.sign(
            rrset,
            self.keys.ksk if use_ksk else self.keys.zsk,
            self.origin,
            self.ksk if use_ksk else self.zsk,
            inception=self.inception,
            expiration=self.expiration,
            origin=self.origin,
        )
        return dns.rdataset.from_rdata(rdataset.ttl, rrsig)


def _refresh_nsec(
    zone: dns.zone.Zone,
    own: Any,
    signer: _Signer,
    name: dns.name.Name,
    next_name: dns.name.Name,
    ttl: int,
) -> None:
    """Make ``name``'s NSEC point at ``next_name`` and list its types; sign it when it changed."""
    node = zone.nodes[name]
    types = {r.rdtype for r in node} | {dns.rdatatype.RRSIG, dns.rdatatype.NSEC}
    record = NSEC(  # type: ignore[no-untyped-call]
        dns.rdataclass.IN,
        dns.rdatatype.NSEC,
        next_name,
        Bitmap.from_rdtypes(list(types)),
    )
    current = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC)
    if current is not None and current.ttl == ttl and list(current) == [record]:
        return
    nsec = dns.rdataset.from_rdata(ttl, record)
    owned = own(name)
    owned.replace_rdataset(nsec)
    owned.replace_rdataset(signer.sign(name, nsec))


class NodeDigests:
    """The ZONEMD (RFC 8976, SIMPLE, SHA-384) input of each node, kept from one serial to the
    next: a node that ``update_zone`` shares between two zones is encoded once. The bytes are
    exactly what ``dns.zone.Zone.compute_digest`` hashes, node by node in canonical order."""

    def __init__(self) -> None:
        self._wire: dict[int, tuple[dns.node.Node, bytes]] = {}
        self.order: _Order | None = None
        """The canonical order of the names of the zone it was last used for (with that
        zone), so the next serial's order is that one plus what changed, not a new sort."""
        self.undelegated: dns.zone.Zone | None = None
        """The last zone ``update_zone`` made, which holds no delegation (so the next batch
        need not look at every node to know it)."""

    def zonemd(
        self,
        zone: dns.zone.Zone,
        names: list[dns.name.Name],
        serial: int,
        nodes: list[dns.node.Node] | None = None,
    ) -> ZONEMD:
        """The digest of ``zone``, whose owner ``names`` are given in canonical order (with
        their ``nodes`` when the caller has them: a name is hashed anew at each lookup)."""
        origin = zone.origin
        assert origin is not None
        hasher = hashlib.sha384()
        kept: dict[int, tuple[dns.node.Node, bytes]] = {}
        for i, name in enumerate(names):
            node = zone.nodes[name] if nodes is None else nodes[i]
            known = self._wire.get(id(node))
            wire = known[1] if known is not None and known[0] is node else None
            if wire is None:
                wire = _digestable(origin, name, node)
            if len(name):  # the apex (the empty name) changes with every serial
                kept[id(node)] = (node, wire)
            hasher.update(wire)
        self._wire = kept
        return ZONEMD(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN,
            dns.rdatatype.ZONEMD,
            serial,
            DigestScheme.SIMPLE,
            DigestHashAlgorithm.SHA384,
            hasher.digest(),
        )


@dataclass(slots=True)
class _Order:
    """A zone's owner names in canonical order, their sort keys, their nodes, and each node's
    ZONEMD input once it was encoded (None until then, and again once the node is replaced)."""

    zone: dns.zone.Zone
    names: list[dns.name.Name]
    keys: list[tuple[bytes, ...]]
    nodes: list[dns.node.Node]
    wires: list[bytes | None]

    @classmethod
    def of(cls, zone: dns.zone.Zone) -> _Order:
        items = sorted(zone.nodes.items(), key=lambda item: _canonical(item[0]))
        return cls(
            zone,
            [n for n, _ in items],
            [_canonical(n) for n, _ in items],
            [v for _, v in items],
            [None] * len(items),
        )

    def zonemd(self, serial: int) -> ZONEMD:
        """The zone's digest (RFC 8976, SIMPLE, SHA-384), encoding only the nodes replaced
        since the last one: the rest of the input is the previous serial's, position by
        position, so a batch costs one SHA-384 pass over the zone and no walk of its names."""
        origin = self.zone.origin
        assert origin is not None
        wires = self.wires
        for at in [i for i, wire in enumerate(wires) if wire is None]:
            wires[at] = _digestable(origin, self.names[at], self.nodes[at])
        return ZONEMD(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN,
            dns.rdatatype.ZONEMD,
            serial,
            DigestScheme.SIMPLE,
            DigestHashAlgorithm.SHA384,
            hashlib.sha384(b"".join(cast(list[bytes], wires))).digest(),
        )

    def moved(self, zone: dns.zone.Zone, touched: Iterable[dns.name.Name]) -> _Order:
        """The order of ``zone``, which differs from this one's zone at ``touched`` names
        only (nodes there added, removed or replaced). Made in place, without copying the
        lists (a copy costs milliseconds at 100,000 names): this order is spent, and its owner
        (``NodeDigests.order``) holds no order until the new one is whole."""
        out = _Order(zone, self.names, self.keys, self.nodes, self.wires)
        self.names, self.keys, self.nodes, self.wires = [], [], [], []
        for name in touched:
            key = _canonical(name)
            at = bisect.bisect_left(out.keys, key)
            held = at < len(out.keys) and out.keys[at] == key
            node = zone.nodes.get(name)
            if node is None and held:
                del out.names[at], out.keys[at], out.nodes[at], out.wires[at]
            elif node is not None and not held:
                out.names.insert(at, name)
                out.keys.insert(at, key)
                out.nodes.insert(at, node)
                out.wires.insert(at, None)
        return out

    def refresh(self, names: Iterable[dns.name.Name]) -> None:
        """Take the current nodes of ``names`` (replaced since the order was made), whose
        ZONEMD input is to be encoded anew."""
        for name in names:
            at = bisect.bisect_left(self.keys, _canonical(name))
            self.nodes[at] = self.zone.nodes[name]
            self.wires[at] = None


def _digestable(origin: dns.name.Name, name: dns.name.Name, node: dns.node.Node) -> bytes:
    """One node's records in ZONEMD's canonical form (RFC 8976 §3.3.1), as dnspython hashes
    them; the apex ZONEMD RRset and its signatures are left out."""
    owner = name.to_digestable(origin)
    out = bytearray()
    for rdataset in sorted(node, key=lambda r: (r.rdtype, r.covers)):
        if name == dns.name.empty and dns.rdatatype.ZONEMD in (rdataset.rdtype, rdataset.covers):
            continue
        fixed = struct.pack("!HHI", rdataset.rdtype, rdataset.rdclass, rdataset.ttl)
        for rdata in sorted(r.to_digestable(origin) for r in rdataset):
            out += owner + fixed + struct.pack("!H", len(rdata)) + rdata
    return bytes(out)
