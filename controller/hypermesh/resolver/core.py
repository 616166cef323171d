"""The stub resolver's core: DNS wire bytes in, decisions and wire bytes out, no I/O.

A query arrives from an ordinary client (glibc, dig, a browser) over UDP or TCP. ``parse``
reads it, bounded, and either answers at once (``Reply``: FORMERR, NOTIMP, BADVERS, REFUSED for
zone transfers) or returns a ``Query``; ``route`` says where its answer comes from:

- ``MESH``: the name falls in a zone of the network's registry (its signed anchors list them).
  The answer is asked of a node with the DO bit and checked from the registry's key down
  (``hypermesh.mirror.verify.check_answer``); ``verified_reply`` builds the client's answer
  from it, with the AD bit (RFC 6840 §5.8: when the client set DO or AD), or SERVFAIL with
  extended DNS error 6, *DNSSEC Bogus* (RFC 8914), naming what failed. HyperMesh names are
  only ever answered verified: the CD bit is not honoured for them;
- ``FORWARD``: any other name, passed to the system's upstream resolvers; their answer goes
  back with the client's ID and without AD (this stub vouches only for what it checked);
- ``REFUSE``: any other name, when forwarding is off.

Every answer is fitted to the client's transport (``fit``): over UDP, the client's EDNS payload
(512 bytes without EDNS, at most ``UDP_PAYLOAD``); an answer that does not fit is sent with
its sections emptied and TC set, so the client asks again over TCP (RFC 1035 §4.2.1, RFC 7766).

``AnswerCache`` keeps finished answers for their TTL, its clock given by the caller.
"""

from __future__ import annotations

import copy
import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.verify import Unverified, check_answer

MAX_QUERY = 4096
"""The largest query read (a question is a few hundred bytes; more is not a stub's client)."""
MAX_MESSAGE = 65535
"""The largest answer: the 2-byte length of TCP framing."""
UDP_PAYLOAD = 1232
"""The EDNS payload this stub advertises and the most it sends over UDP (DNS flag day 2020)."""
PLAIN_UDP = 512
"""What a client without EDNS takes over UDP (RFC 1035 §4.2.1)."""
MAX_CACHED = 10_000
"""Answers the cache keeps; the least recently used go first."""
MAX_TTL = 3600
"""The longest an answer is kept, whatever its TTL says."""
EDE_TEXT = 200
"""Characters of explanation carried in an extended DNS error."""

_QR = int(dns.flags.QR)
_AD = int(dns.flags.AD)
_TRANSFERS = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_DNSSEC_TYPES = frozenset({dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3})


class Route(enum.Enum):
    """Where a query's answer comes from."""

    MESH = "mesh"
    FORWARD = "forward"
    REFUSE = "refuse"


class Outcome(enum.Enum):
    """What became of a query, as the counters count it."""

    VERIFIED = "verified"
    BOGUS = "bogus"
    FORWARDED = "forwarded"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: the message, its one question, and what the client can take."""

    message: dns.message.Message
    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    edns: bool
    """The client spoke EDNS(0): its answer carries an OPT record (and extended errors)."""
    do: bool
    """The client set DO: DNSSEC records stay in its answer."""
    payload: int
    """The most the client takes over UDP: its EDNS payload (512 at least), or 512."""

    @property
    def wants_ad(self) -> bool:
        """RFC 6840 §5.8: AD goes to clients that set DO or AD."""
        return self.do or bool(self.message.flags & _AD)

    def udp_limit(self) -> int:
        """The largest answer to send this client over UDP."""
        return min(self.payload, UDP_PAYLOAD) if self.edns else PLAIN_UDP


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer decided without asking anyone."""

    message: dns.message.Message | None
    """None: only a bare header could be made (``wire`` is the answer)."""
    wire: bytes
    outcome: Outcome


def parse(wire: bytes) -> Query | Reply | None:
    """``wire`` read as a query; a ``Reply`` when it is answered at once; None when nothing
    should be sent (fewer than 12 bytes, more than ``MAX_QUERY``, or not a query). Never
    raises."""
    if len(wire) < 12 or len(wire) > MAX_QUERY or wire[2] & 0x80:
        return None
    try:
        message = dns.message.from_wire(wire)
    except dns.message.BadEDNS:
        return _bare(wire, dns.rcode.FORMERR)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return _bare(wire, dns.rcode.FORMERR)
    if message.opcode() != dns.opcode.QUERY:
        return _at_once(message, dns.rcode.NOTIMP)
    if len(message.question) != 1:
        return _at_once(message, dns.rcode.FORMERR)
    if message.edns > 0:
        return _at_once(message, dns.rcode.BADVERS)
    question = message.question[0]
    if question.rdtype in _TRANSFERS:
        return _at_once(message, dns.rcode.REFUSED, Outcome.REFUSED)
    if question.rdclass != dns.rdataclass.IN:
        return _at_once(message, dns.rcode.REFUSED, Outcome.REFUSED)
    edns = message.edns == 0
    return Query(
        message=message,
        name=question.name,
        rdtype=question.rdtype,
        edns=edns,
        do=bool(message.ednsflags & dns.flags.DO),
        payload=max(PLAIN_UDP, message.payload) if edns else PLAIN_UDP,
    )


def zone_of(name: dns.name.Name, zones: Iterable[str]) -> dns.name.Name | None:
    """The closest zone of ``zones`` (absolute names as text) holding ``name``."""
    found: dns.name.Name | None = None
    for text in zones:
        zone = dns.name.from_text(text)
        if name.is_subdomain(zone) and (found is None or len(zone) > len(found)):
            found = zone
    return found


def route(query: Query, zones: Iterable[str], *, forward: bool) -> Route:
    """Where ``query``'s answer comes from: the mesh for a name in ``zones`` (the registry's),
    else the upstreams when ``forward``, else nowhere."""
    if zone_of(query.name, zones) is not None:
        return Route.MESH
    return Route.FORWARD if forward else Route.REFUSE


def mesh_question(query: Query) -> dns.message.Message:
    """What to ask a node for ``query``: the same question, with DO, over a transport without
    a size limit."""
    return dns.message.make_query(
        query.name, query.rdtype, want_dnssec=True, use_edns=0, payload=UDP_PAYLOAD
    )


def keys_question(zone: dns.name.Name) -> dns.message.Message:
    """What to ask a node for ``zone``'s DNSKEY RRset and its signatures."""
    return dns.message.make_query(
        zone, dns.rdatatype.DNSKEY, want_dnssec=True, use_edns=0, payload=UDP_PAYLOAD
    )


def verified_reply(
    query: Query,
    response: dns.message.Message,
    keys: dns.message.Message,
    anchors: Anchors,
    now: float,
) -> dns.message.Message:
    """The client's answer from a node's ``response`` (to ``mesh_question``), checked with the
    zone ``keys`` against ``anchors`` at ``now`` (seconds since the epoch): the node's records,
    AD when the client asked for it, DNSSEC records only for a client that set DO; SERVFAIL
    with extended error 6 when the check fails."""
    if response.question and response.question[0].name != query.name:
        return failure(query, dns.edns.EDECode.DNSSEC_BOGUS, "the node answered another question")
    try:
        check_answer(response, keys, anchors, now=now)
    except Unverified as exc:
        return failure(query, dns.edns.EDECode.DNSSEC_BOGUS, str(exc))
    reply = _response(query, response.rcode())
    reply.answer = _kept(response.answer, query)
    reply.authority = _kept(response.authority, query)
    if query.wants_ad:
        reply.flags |= _AD
    return reply


def forwarded_reply(query: Query, upstream: dns.message.Message) -> dns.message.Message:
    """The client's answer from an upstream resolver's: its records and rcode, the client's
    ID and EDNS, no AD."""
    reply = _response(query, upstream.rcode())
    reply.answer = list(upstream.answer)
    reply.authority = list(upstream.authority)
    reply.additional = [r for r in upstream.additional if r.rdtype != dns.rdatatype.OPT]
    if not query.do:
        reply.answer = _kept(reply.answer, query)
        reply.authority = _kept(reply.authority, query)
        reply.additional = _kept(reply.additional, query)
    options = [o for o in upstream.options if o.otype == dns.edns.OptionType.EDE]
    if query.edns and options:
        reply.use_edns(0, reply.ednsflags, UDP_PAYLOAD, options=options[:4])
    return reply


def failure(query: Query, code: dns.edns.EDECode, why: str) -> dns.message.Message:
    """SERVFAIL for ``query``, with extended DNS error ``code`` and ``why`` when the client
    speaks EDNS."""
    reply = _response(query, dns.rcode.SERVFAIL)
    if query.edns:
        ede = dns.edns.EDEOption(code, _printable(why)[:EDE_TEXT])
        reply.use_edns(0, reply.ednsflags, UDP_PAYLOAD, options=[ede])
    return reply


def refused(query: Query) -> dns.message.Message:
    """REFUSED for a name this stub neither serves nor forwards, with extended error 18,
    *Prohibited* (the operator turned forwarding off)."""
    reply = _response(query, dns.rcode.REFUSED)
    if query.edns:
        ede = dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED, "forwarding is off")
        reply.use_edns(0, reply.ednsflags, UDP_PAYLOAD, options=[ede])
    return reply


def fit(message: dns.message.Message, limit: int) -> tuple[bytes, bool]:
    """``message`` as wire bytes of at most ``limit`` bytes; (bytes, truncated). What does not
    fit goes with its sections emptied and TC set: the client asks again over TCP."""
    try:
        return message.to_wire(max_size=limit), False
    except dns.exception.TooBig:
        pass
    short = dns.message.Message(message.id)
    short.flags = message.flags | dns.flags.TC
    short.question = list(message.question)
    if message.edns >= 0:
        short.use_edns(0, message.ednsflags, message.payload)
    return short.to_wire(max_size=limit), True


def cache_ttl(message: dns.message.Message) -> int:
    """How long an answer may be kept: its smallest TTL, the SOA's negative TTL for NXDOMAIN
    and NODATA (RFC 2308 §5), at most ``MAX_TTL``; 0 for anything else (not kept)."""
    rcode = message.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return 0
    if rcode == dns.rcode.NOERROR and message.answer:
        return min(MAX_TTL, *(r.ttl for r in (*message.answer, *message.authority)))
    soa = next((r for r in message.authority if r.rdtype == dns.rdatatype.SOA), None)
    if soa is None:
        return 0
    return int(min(MAX_TTL, soa.ttl, soa[0].minimum))


CacheKey = tuple[dns.name.Name, int, bool, bool]
"""(name, type, DO, AD wanted): what makes two questions' answers differ."""


@dataclass(slots=True)
class _Cached:
    message: dns.message.Message
    stored_at: float
    ttl: int
    outcome: Outcome


class AnswerCache:
    """Finished answers by question, kept for their TTL; the caller gives the time."""

    def __init__(self, max_entries: int = MAX_CACHED) -> None:
        self._max = max_entries
        self._entries: OrderedDict[CacheKey, _Cached] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(query: Query) -> CacheKey:
        return (query.name.canonicalize(), int(query.rdtype), query.do, query.wants_ad)

    def get(self, query: Query, now: float) -> tuple[dns.message.Message, Outcome] | None:
        """The kept answer for ``query`` with its ID and the TTLs counted down; None."""
        key = self.key(query)
        entry = self._entries.get(key)
        if entry is None or now - entry.stored_at >= entry.ttl:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        elapsed = int(now - entry.stored_at)
        reply = _response(query, entry.message.rcode())
        reply.flags |= entry.message.flags & _AD
        for section, kept in (
            (reply.answer, entry.message.answer),
            (reply.authority, entry.message.authority),
            (reply.additional, entry.message.additional),
        ):
            for rrset in kept:
                aged = copy.copy(rrset)
                aged.ttl = max(0, rrset.ttl - elapsed)
                section.append(aged)
        return reply, entry.outcome

    def put(self, query: Query, reply: dns.message.Message, outcome: Outcome, now: float) -> None:
        """Keep ``reply`` (not SERVFAIL, not without a TTL) for its TTL."""
        ttl = cache_ttl(reply)
        if ttl <= 0:
            return
        self._entries[self.key(query)] = _Cached(reply, now, ttl, outcome)
        self._entries.move_to_end(self.key(query))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def _response(query: Query, rcode: dns.rcode.Rcode) -> dns.message.Message:
    """An empty answer to ``query``: its ID, question and RD, RA set, EDNS when it had it."""
    reply = dns.message.make_response(query.message, recursion_available=True)
    reply.flags &= ~(_AD | int(dns.flags.AA))
    reply.set_rcode(rcode)
    if query.edns:
        reply.use_edns(0, dns.flags.DO if query.do else 0, UDP_PAYLOAD)
    else:
        reply.use_edns(False)
    return reply


def _kept(section: list[dns.rrset.RRset], query: Query) -> list[dns.rrset.RRset]:
    """``section`` without DNSSEC records unless the client set DO or asked for that type."""
    if query.do:
        return list(section)
    return [r for r in section if r.rdtype not in _DNSSEC_TYPES or r.rdtype == query.rdtype]


def _at_once(
    message: dns.message.Message, rcode: dns.rcode.Rcode, outcome: Outcome = Outcome.MALFORMED
) -> Reply:
    reply = dns.message.make_response(message, recursion_available=True)
    reply.set_rcode(rcode)
    if message.edns < 0:
        reply.use_edns(False)
    elif rcode == dns.rcode.BADVERS:
        reply.use_edns(0, 0, UDP_PAYLOAD)
        reply.set_rcode(rcode)
    return Reply(reply, reply.to_wire(max_size=PLAIN_UDP), outcome)


def _bare(wire: bytes, rcode: dns.rcode.Rcode) -> Reply:
    """A header alone, for a query that could not be read: its ID, QR, the rcode."""
    flags = 0x8000 | (wire[2] & 0x79) << 8 | 0x80 | int(rcode)
    header = wire[:2] + flags.to_bytes(2, "big") + bytes(8)
    return Reply(None, header, Outcome.MALFORMED)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
