"""The authoritative answering engine: DNS wire bytes in, DNS wire bytes out, no I/O.

``DnsEngine(source).answer(query_wire)`` answers from the zones of a ``ZoneSource``: the
closest enclosing zone answers with the AA bit; names outside every zone are REFUSED (this is
not a resolver). dnspython does all the wire format; this module only decides what goes in.

What it answers:

- positive answers, CNAME chains (followed through every zone served, at most
  ``MAX_CNAME_CHAIN`` links), ANY (every RRset at the name), NS with in-zone addresses as
  additional data, and referrals for NS below a zone's apex (DS answered on the parent side);
- NXDOMAIN and NODATA with the zone's SOA in the authority section, its TTL lowered to the
  negative TTL ``min(SOA TTL, SOA minimum)`` (RFC 2308); empty non-terminals are NODATA;
- wildcards (RFC 4592) synthesise answers at the query name;
- EDNS(0) echoed with a payload of ``clamp(asked, 512, 4096)``, padding to 468-byte blocks when
  the query was padded (RFC 8467), BADVERS for EDNS versions above 0; with the DO bit, the
  RRSIGs of every RRset sent, and for negative and wildcard answers the NSEC records (and
  their RRSIGs) that prove them (RFC 4035 §3.1.3). Zones signed with NSEC3 get no proofs;
- answers from a zone its source marks stale (a mirror's copy past the SOA expire, RFC 8767)
  carry TTLs of at most 30 seconds and extended DNS error 3, Stale Answer (RFC 8914);
- FORMERR for a malformed query or one with other than one question (a bare header with the
  query's ID; nothing at all when fewer than 12 bytes arrive), NOTIMP for opcodes other than
  QUERY and for meta-types other than ANY, REFUSED for zone transfers; a message with the QR
  bit set is dropped (``None``), so two servers never answer each other forever.

Answers are not truncated: DoQ and DoH carry messages up to 65,535 bytes, so the advertised
EDNS payload only matters to UDP, which this engine does not serve. An answer that would not
fit in 65,535 bytes is sent empty with TC set.

Caching: every answer is kept as wire bytes, keyed by the query bytes after the ID and by
``(qname as sent, qtype, qclass, RD|CD, EDNS version, DO, payload, padding)``; a hit copies the
query's ID into the cached bytes and does no DNS encoding (the first key does no decoding
either). Both maps are dropped when the source's ``version`` changes, and each holds at most
``MAX_CACHED`` answers (the oldest go first).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.zone

from hypermesh.dns.source import ZoneSource

log = logging.getLogger(__name__)

MIN_PAYLOAD = 512
"""The smallest EDNS payload size echoed (RFC 6891: smaller values mean 512)."""
MAX_PAYLOAD = 4096
"""The largest EDNS payload size echoed."""
DEFAULT_PAYLOAD = 1232
"""The payload advertised when the query's own could not be read (DNS flag day 2020)."""
MAX_MESSAGE = 65535
"""The largest answer: DoQ's 2-byte length prefix and RFC 8484 both stop here."""
MAX_CACHED = 16384
"""Answers kept per cache map before the oldest are dropped."""
MAX_CNAME_CHAIN = 8
"""CNAME links followed before giving up (a loop stops at the first repeated name)."""
PADDING_BLOCK = 468
"""RFC 8467's recommended block size for padded responses."""
STALE_TTL = 30
"""The TTL of answers from a zone past its expiry (RFC 8767's recommendation)."""
"""RFC 8467's recommended block size for padded responses."""

_RD_CD = int(dns.flags.RD | dns.flags.CD)
_QR = int(dns.flags.QR)
_DO = int(dns.flags.DO)
_TRANSFERS = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_K = TypeVar("_K")

RRsetKey = tuple[dns.rdatatype.RdataType, dns.rdatatype.RdataType]
"""``(rdtype, covers)``: how RRsets are kept at a name (``covers`` is NONE except for RRSIG)."""


@runtime_checkable
class EditCountingSource(Protocol):
    """A ``ZoneSource`` that also counts its in-place edits (``StaticZones.touch``): while the
    count stands still, a version change means zones were replaced, not edited, so the index
    of every zone that was not replaced may be kept."""

    @property
    def edits(self) -> int: ...


@runtime_checkable
class StaleMarkingSource(Protocol):
    """A ``ZoneSource`` that knows which of its zones are served past their expiry (a
    mirror's copies): answers from them are marked stale (RFC 8767)."""

    @property
    def stale(self) -> frozenset[dns.name.Name]: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    """One cached answer."""

    wire: bytes
    """The whole answer; bytes 0-1 (the ID) are replaced by the query's."""
    ttl: int
    """The smallest TTL in the answer and authority sections (0 when there is none)."""


@dataclass(slots=True)
class _ZoneIndex:
    """One zone flattened for lookups: absolute RRsets by name, plus what lookups need."""

    origin: dns.name.Name
    rdclass: dns.rdataclass.RdataClass
    rrsets: dict[dns.name.Name, dict[RRsetKey, dns.rrset.RRset]]
    empty_non_terminals: frozenset[dns.name.Name]
    cuts: frozenset[dns.name.Name]
    """Names below the apex holding NS: delegations."""
    nsec_owners: list[dns.name.Name]
    """Owners of NSEC records, in canonical DNSSEC order."""
    negative_soa: dns.rrset.RRset | None
    negative_soa_rrsig: dns.rrset.RRset | None

    def get(
        self,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        covers: dns.rdatatype.RdataType = dns.rdatatype.NONE,
    ) -> dns.rrset.RRset | None:
        node = self.rrsets.get(name)
        return None if node is None else node.get((rdtype, covers))

    def exists(self, name: dns.name.Name) -> bool:
        return name in self.rrsets or name in self.empty_non_terminals or name == self.origin

    def covering_nsec(self, name: dns.name.Name) -> dns.name.Name | None:
        """The owner of the NSEC whose span covers (or equals) ``name``."""
        if not self.nsec_owners:
            return None
        position = bisect.bisect_right(self.nsec_owners, name) - 1
        return self.nsec_owners[position]  # -1 wraps to the last NSEC, which points at the apex

    def delegation(self, name: dns.name.Name) -> dns.name.Name | None:
        """The topmost zone cut at or above ``name`` (below the apex), or None."""
        if not self.cuts:
            return None
        found = None
        while name != self.origin:
            if name in self.cuts:
                found = name
            name = name.parent()
        return found


@dataclass(slots=True)
class _Sections:
    """The answer being built."""

    do: bool
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    authoritative: bool = True
    zone: dns.name.Name | None = None
    """The zone that answered the question (the first link of a CNAME chain)."""
    _seen: set[tuple[int, dns.name.Name, int, int]] = field(default_factory=set)

    def add(
        self,
        section: list[dns.rrset.RRset],
        rrset: dns.rrset.RRset | None,
        index: _ZoneIndex | None = None,
        owner: dns.name.Name | None = None,
    ) -> None:
        """Add ``rrset`` (renamed to ``owner`` for a wildcard) and, with DO, its RRSIG."""
        if rrset is None:
            return
        name = owner if owner is not None else rrset.name
        key = (id(section), name, int(rrset.rdtype), int(rrset.covers))
        if key in self._seen:
            return
        self._seen.add(key)
        section.append(rrset if owner is None else _renamed(rrset, owner))
        if self.do and index is not None and rrset.rdtype != dns.rdatatype.RRSIG:
            self.add(section, index.get(rrset.name, dns.rdatatype.RRSIG, rrset.rdtype), None, owner)

    def add_nsec(self, index: _ZoneIndex, owner: dns.name.Name | None) -> None:
        """Add the NSEC at ``owner`` and its RRSIG to the authority section (DO only)."""
        if self.do and owner is not None:
            self.add(self.authority, index.get(owner, dns.rdatatype.NSEC), index)

    def negative(self, index: _ZoneIndex, rcode: dns.rcode.Rcode) -> None:
        """NXDOMAIN or NODATA: the SOA at the negative TTL in the authority section."""
        self.rcode = rcode
        self.add(self.authority, index.negative_soa)
        if self.do:
            self.add(self.authority, index.negative_soa_rrsig)


class DnsEngine:
    """Answers DNS queries from a ``ZoneSource``; pure: bytes in, bytes out.

    Not thread-safe: use it from one thread (the event loop's). The source may be changed
    from elsewhere as long as it publishes zones before bumping its version.
    """

    def __init__(self, source: ZoneSource) -> None:
        self._source = source
        self._edit_counter = source if isinstance(source, EditCountingSource) else None
        self._stale_marker = source if isinstance(source, StaleMarkingSource) else None
        self._version: int | None = None
        self._indexes: dict[dns.name.Name, tuple[dns.zone.Zone, _ZoneIndex]] = {}
        self._edits: int | None = None
        self._by_wire: dict[bytes, _Entry] = {}
        self._by_key: dict[tuple[object, ...], _Entry] = {}

    @property
    def source(self) -> ZoneSource:
        """Where the zones come from."""
        return self._source

    def answer(self, query_wire: bytes) -> bytes | None:
        """The answer to ``query_wire``; None when nothing should be sent (fewer than 12
        bytes, or not a query). Never raises."""
        entry = self._entry(query_wire)
        return None if entry is None else query_wire[:2] + entry.wire[2:]

    def answer_with_ttl(self, query_wire: bytes) -> tuple[bytes, int] | None:
        """``answer`` and how long it may be cached: the smallest TTL it carries (0 if none)."""
        entry = self._entry(query_wire)
        return None if entry is None else (query_wire[:2] + entry.wire[2:], entry.ttl)

    def cache_size(self) -> int:
        """How many answers are cached (both maps), for tests and metrics."""
        return len(self._by_wire) + len(self._by_key)

    def _stale_zones(self) -> frozenset[dns.name.Name]:
        """The zones the source serves past their expiry (a source without the notion: none)."""
        return frozenset() if self._stale_marker is None else self._stale_marker.stale

    # -- the cached path ---------------------------------------------------------------

    def _entry(self, query_wire: bytes) -> _Entry | None:
        if len(query_wire) < 12:
            return None
        version = self._source.version
        if version != self._version:
            self._version = version
            # A source that counts its in-place edits (StaticZones) lets the index of every
            # zone that was not replaced be kept; otherwise any zone may have been edited.
            edits = None if self._edit_counter is None else self._edit_counter.edits
            if edits is None or edits != self._edits:
                self._indexes = {}
            else:
                zones = self._source.zones()
                self._indexes = {
                    origin: (zone, index)
                    for origin, (zone, index) in self._indexes.items()
                    if zones.get(origin) is zone
                }
            self._edits = edits
            self._by_wire.clear()
            self._by_key.clear()
        raw_key = query_wire[2:]
        entry = self._by_wire.get(raw_key)
        if entry is not None:
            return entry
        try:
            entry, cacheable = self._uncached(query_wire)
        except Exception:  # a bug or a zone we cannot serve must not take the server down
            log.exception("cannot answer a query")
            return _header_only(query_wire, dns.rcode.SERVFAIL)
        if entry is not None and cacheable:
            _remember(self._by_wire, raw_key, entry)
        return entry

    def _uncached(self, query_wire: bytes) -> tuple[_Entry | None, bool]:
        """The answer and whether it may be cached by the query's bytes."""
        flags = int.from_bytes(query_wire[2:4], "big")
        if flags & _QR:
            return None, False
        if dns.opcode.from_flags(flags) != dns.opcode.QUERY:
            return _header_only(query_wire, dns.rcode.NOTIMP), False
        try:
            query = dns.message.from_wire(query_wire)
        except Exception:  # dnspython raises many types for bad input; all are FORMERR here
            return _header_only(query_wire, dns.rcode.FORMERR), False
        if len(query.question) != 1:
            return _header_only(query_wire, dns.rcode.FORMERR), False
        question = query.question[0]
        do = query.edns >= 0 and bool(query.ednsflags & _DO)
        payload = min(max(query.payload, MIN_PAYLOAD), MAX_PAYLOAD) if query.edns >= 0 else 0
        padded = any(option.otype == dns.edns.OptionType.PADDING for option in query.options)
        key = (
            question.name.labels,  # as sent: the answer echoes the question's letter case
            int(question.rdtype),
            int(question.rdclass),
            int(query.flags) & _RD_CD,
            query.edns,
            do,
            payload,
            padded,
        )
        entry = self._by_key.get(key)
        if entry is None:
            entry = self._build(query, do, payload)
            _remember(self._by_key, key, entry)
        return entry, True

    # -- building an answer ------------------------------------------------------------

    def _build(self, query: dns.message.Message, do: bool, payload: int) -> _Entry:
        response = dns.message.make_response(query, our_payload=payload or DEFAULT_PAYLOAD)
        response.flags |= query.flags & dns.flags.CD
        if do:
            response.want_dnssec(True)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return _encode(response)
        question = query.question[0]
        sections = self._resolve(question.name, question.rdtype, question.rdclass, do)
        response.set_rcode(sections.rcode)
        if sections.authoritative and sections.rcode != dns.rcode.REFUSED:
            response.flags |= dns.flags.AA
        response.answer = sections.answer
        response.authority = sections.authority
        response.additional = sections.additional
        if sections.zone is not None and sections.zone in self._stale_zones():
            _mark_stale(response, query)
        return _encode(response)

    def _resolve(
        self,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        qclass: dns.rdataclass.RdataClass,
        do: bool,
    ) -> _Sections:
        sections = _Sections(do=do)
        if qtype in _TRANSFERS:
            sections.rcode = dns.rcode.REFUSED
            return sections
        if dns.rdatatype.is_metatype(qtype) and qtype != dns.rdatatype.ANY:
            sections.rcode = dns.rcode.NOTIMP
            return sections
        zones = self._source.zones()
        name: dns.name.Name | None = qname
        seen: set[dns.name.Name] = set()
        for link in range(MAX_CNAME_CHAIN + 1):
            if name is None or name in seen:
                break
            seen.add(name)
            index = self._zone_for(zones, name, qtype)
            if index is None or index.rdclass != qclass:
                if link == 0:
                    sections.rcode = dns.rcode.REFUSED
                break  # a CNAME out of our zones: the client follows it elsewhere
            if link == 0:
                sections.zone = index.origin
            name = _lookup(index, name, qtype, sections, first=link == 0)
        return sections

    def _zone_for(
        self,
        zones: Mapping[dns.name.Name, dns.zone.Zone],
        name: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
    ) -> _ZoneIndex | None:
        """The closest enclosing zone; for DS at a zone's apex, the parent zone if served."""
        found: dns.name.Name | None = None
        candidate = name
        while True:
            if candidate in zones:
                if not (qtype == dns.rdatatype.DS and candidate == name and len(name) > 1):
                    found = candidate
                    break
                found = found or candidate  # the child, unless a parent turns up
            if candidate == dns.name.root:
                break
            candidate = candidate.parent()
        if found is None:
            return None
        zone = zones[found]
        known = self._indexes.get(found)
        if known is not None and known[0] is zone:
            return known[1]
        index = _index(zone)
        self._indexes[found] = (zone, index)
        return index


def _lookup(
    index: _ZoneIndex,
    qname: dns.name.Name,
    qtype: dns.rdatatype.RdataType,
    sections: _Sections,
    *,
    first: bool,
) -> dns.name.Name | None:
    """Answer ``qname``/``qtype`` from one zone into ``sections``; the CNAME target to follow
    next, or None when the answer is complete."""
    cut = index.delegation(qname)
    if cut is not None and not (cut == qname and qtype == dns.rdatatype.DS):
        _referral(index, cut, sections, first=first)
        return None
    owner = qname
    source: dns.name.Name = qname  # where the RRsets live (the wildcard, when synthesised)
    if not index.exists(qname):
        closest = _closest_encloser(index, qname)
        wildcard = dns.name.Name((b"*", *closest.labels))
        if wildcard not in index.rrsets:
            sections.negative(index, dns.rcode.NXDOMAIN)
            sections.add_nsec(index, index.covering_nsec(qname))
            sections.add_nsec(index, index.covering_nsec(wildcard))
            return None
        source = wildcard
        sections.add_nsec(index, index.covering_nsec(qname))  # no closer match exists
    node = index.rrsets.get(source)
    synthesised = owner if source != qname else None
    if node is None:  # an empty non-terminal
        sections.negative(index, dns.rcode.NOERROR)
        sections.add_nsec(index, index.covering_nsec(qname))
        return None
    if qtype == dns.rdatatype.ANY or qtype == dns.rdatatype.RRSIG:
        wanted = [
            rrset
            for (rdtype, _), rrset in node.items()
            if (rdtype == dns.rdatatype.RRSIG) == (qtype == dns.rdatatype.RRSIG)
        ]
        for rrset in wanted:
            sections.add(sections.answer, rrset, index, synthesised)
        if wanted:
            return None
    else:
        found = node.get((qtype, dns.rdatatype.NONE))
        if found is not None:
            sections.add(sections.answer, found, index, synthesised)
            if qtype == dns.rdatatype.NS:
                _add_addresses(index, found, sections)
            return None
        cname = node.get((dns.rdatatype.CNAME, dns.rdatatype.NONE))
        if cname is not None:
            sections.add(sections.answer, cname, index, synthesised)
            target = cname[0].target
            return target if isinstance(target, dns.name.Name) else None
    sections.negative(index, dns.rcode.NOERROR)
    sections.add_nsec(index, source)
    return None


def _referral(index: _ZoneIndex, cut: dns.name.Name, sections: _Sections, *, first: bool) -> None:
    """NS at the cut in the authority section, DS (or the NSEC proving there is none) with
    DO, glue addresses as additional data; not authoritative."""
    if first:
        sections.authoritative = False
    ns = index.get(cut, dns.rdatatype.NS)
    sections.add(sections.authority, ns)
    if sections.do:
        ds = index.get(cut, dns.rdatatype.DS)
        if ds is not None:
            sections.add(sections.authority, ds, index)
        else:
            sections.add_nsec(index, cut)
    if ns is not None:
        _add_addresses(index, ns, sections, glue=True)


def _add_addresses(
    index: _ZoneIndex, ns: dns.rrset.RRset, sections: _Sections, *, glue: bool = False
) -> None:
    for rdata in ns:
        if not isinstance(rdata, dns.rdtypes.ANY.NS.NS):
            continue
        target = rdata.target
        if not target.is_subdomain(index.origin):
            continue
        for rdtype in _ADDRESS_TYPES:
            # glue is not signed (it belongs to the child); in-zone addresses are
            sections.add(sections.additional, index.get(target, rdtype), None if glue else index)


def _closest_encloser(index: _ZoneIndex, qname: dns.name.Name) -> dns.name.Name:
    name = qname.parent()
    while name != index.origin and not index.exists(name):
        name = name.parent()
    return name


def _renamed(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    return _copy(rrset, owner, rrset.ttl)


def _with_ttl(rrset: dns.rrset.RRset, ttl: int) -> dns.rrset.RRset:
    return _copy(rrset, rrset.name, ttl)


def _copy(rrset: dns.rrset.RRset, owner: dns.name.Name, ttl: int) -> dns.rrset.RRset:
    copy = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype, rrset.covers)
    for rdata in rrset:
        copy.add(rdata, ttl)
    return copy


def _mark_stale(response: dns.message.Message, query: dns.message.Message) -> None:
    """RFC 8767: TTLs of at most ``STALE_TTL``, and RFC 8914's extended error 3 (Stale
    Answer) when the client speaks EDNS."""
    for section in (response.answer, response.authority, response.additional):
        section[:] = [
            _with_ttl(rrset, STALE_TTL) if rrset.ttl > STALE_TTL else rrset for rrset in section
        ]
    if query.edns >= 0:
        options = [*response.options, dns.edns.EDEOption(dns.edns.EDECode.STALE_ANSWER)]
        response.use_edns(0, response.ednsflags, response.payload, options=options)


# -- zone indexes -------------------------------------------------------------------------


def _index(zone: dns.zone.Zone) -> _ZoneIndex:
    """Flatten ``zone`` into absolute RRsets by name, with its empty non-terminals, cuts and
    NSEC chain. Relative names (a zone read with ``relativize=True``) are made absolute."""
    origin = zone.origin
    assert origin is not None and origin.is_absolute()
    relative = zone.relativize
    rrsets: dict[dns.name.Name, dict[RRsetKey, dns.rrset.RRset]] = {}
    with zone.reader() as txn:
        for name, rdataset in txn.iterate_rdatasets():
            owner = name.derelativize(origin)
            rrsets.setdefault(owner, {})[(rdataset.rdtype, rdataset.covers)] = _absolute(
                owner, rdataset, origin if relative else None
            )
    empty: set[dns.name.Name] = set()
    for name in rrsets:
        parent = name
        while parent != origin and len(parent) > len(origin):
            parent = parent.parent()
            if parent not in rrsets:
                empty.add(parent)
    cuts = frozenset(
        name
        for name, node in rrsets.items()
        if name != origin and (dns.rdatatype.NS, dns.rdatatype.NONE) in node
    )
    nsec_owners = sorted(
        name for name, node in rrsets.items() if (dns.rdatatype.NSEC, dns.rdatatype.NONE) in node
    )
    negative_soa = negative_rrsig = None
    soa = rrsets.get(origin, {}).get((dns.rdatatype.SOA, dns.rdatatype.NONE))
    if soa is not None and len(soa) > 0:
        soa_rdata = soa[0]
        assert isinstance(soa_rdata, dns.rdtypes.ANY.SOA.SOA)
        ttl = min(soa.ttl, soa_rdata.minimum)
        negative_soa = _with_ttl(soa, ttl)
        rrsig = rrsets[origin].get((dns.rdatatype.RRSIG, dns.rdatatype.SOA))
        negative_rrsig = None if rrsig is None else _with_ttl(rrsig, ttl)
    return _ZoneIndex(
        origin=origin,
        rdclass=zone.rdclass,
        rrsets=rrsets,
        empty_non_terminals=frozenset(empty),
        cuts=cuts,
        nsec_owners=nsec_owners,
        negative_soa=negative_soa,
        negative_soa_rrsig=negative_rrsig,
    )


def _absolute(
    owner: dns.name.Name, rdataset: dns.rdataset.Rdataset, origin: dns.name.Name | None
) -> dns.rrset.RRset:
    """An RRset at ``owner``; with an ``origin``, the rdata's relative names made absolute."""
    rdatas: Iterable[dns.rdata.Rdata] = rdataset
    if origin is not None:
        rdatas = [_absolute_rdata(rdata, origin) for rdata in rdataset]
    rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
    for rdata in rdatas:
        rrset.add(rdata, rdataset.ttl)
    return rrset


def _absolute_rdata(rdata: dns.rdata.Rdata, origin: dns.name.Name) -> dns.rdata.Rdata:
    """The same rdata with every relative name made absolute (through dnspython's codec)."""
    wire = rdata.to_wire(origin=origin)
    assert wire is not None
    return dns.rdata.from_wire(rdata.rdclass, rdata.rdtype, wire, 0, len(wire))


# -- encoding -----------------------------------------------------------------------------


def _encode(response: dns.message.Message) -> _Entry:
    try:
        wire = response.to_wire(max_size=MAX_MESSAGE)
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        wire = response.to_wire(max_size=MAX_MESSAGE)
    ttls = [rrset.ttl for section in (response.answer, response.authority) for rrset in section]
    return _Entry(wire=wire, ttl=min(ttls, default=0))


def _header_only(query_wire: bytes, rcode: dns.rcode.Rcode) -> _Entry:
    """A response of just a header: the query's ID, opcode and RD bit, and ``rcode``."""
    flags = int.from_bytes(query_wire[2:4], "big")
    message = dns.message.Message(id=int.from_bytes(query_wire[:2], "big"))
    message.flags = dns.flags.Flag(int(dns.flags.QR) | (flags & int(dns.flags.RD)))
    message.set_opcode(dns.opcode.from_flags(flags))
    message.set_rcode(rcode)
    return _Entry(wire=message.to_wire(), ttl=0)


def _remember(cache: dict[_K, _Entry], key: _K, entry: _Entry) -> None:
    if len(cache) >= MAX_CACHED:
        del cache[next(iter(cache))]
    cache[key] = entry
