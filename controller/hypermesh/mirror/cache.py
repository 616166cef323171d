"""Answers for names outside the zones a node mirrors: asked of the registry, kept for their
TTL.

A mirror answers from its copies first. A question no copy holds but that falls in a zone the
registry serves (one the mirror has not copied yet, or whose copy it refused) is sent to the
registry over DNS over QUIC (a new connection per question, proving the node's key), and the
answer kept; names in no
zone of the registry stay REFUSED without asking it:

- for the smallest TTL of its answer and authority sections, handed out with the TTLs counted
  down (RFC 1035 §3.2.1);
- negative answers (NXDOMAIN, NODATA) for the SOA's negative TTL, ``min(SOA TTL, SOA
  minimum)`` (RFC 2308 §5); answers with no TTL to go by, and REFUSED or SERVFAIL, not at all;
- until the zone they belong to is copied or changes: ``purge`` drops every entry at or below
  a zone as soon as a pushed copy of it arrives, so a name queried before it existed is
  answered as soon as it is registered, not after the SOA minimum.

The registry unreachable, the answer is SERVFAIL with extended error 22, *No Reachable
Authority* (RFC 8914).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from hypermesh.errors import HyperMeshError
from hypermesh.transport.address import PeerRef
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity

log = logging.getLogger("hypermesh.mirror")

MAX_ENTRIES = 10_000
"""Answers kept; the least recently used go first."""
FORWARD_TIMEOUT = 3.0
"""Seconds to wait for the registry's answer."""

_REFUSED = int(dns.rcode.REFUSED)
Key = tuple[dns.name.Name, int, int, bool]


@dataclass(slots=True)
class _Entry:
    message: dns.message.Message
    stored_at: float
    ttl: int


class ForwardingCache:
    """Asks ``upstream()`` (the registry) what the mirror cannot answer, proving ``identity``
    (the node's key), and remembers."""

    def __init__(
        self,
        upstream: Callable[[], PeerRef | None],
        covers: Callable[[dns.name.Name], bool] = lambda name: True,
        *,
        identity: Identity | None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._upstream = upstream
        self._identity = identity
        self._covers = covers
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def answer(self, query_wire: bytes, local: bytes) -> bytes | Awaitable[bytes]:
        """``local`` (the mirror's own answer) unless it is REFUSED for want of a zone; then
        the cached answer, or an awaitable that asks the registry."""
        if len(local) < 4 or local[3] & 0x0F != _REFUSED:
            return local
        try:
            query = dns.message.from_wire(query_wire)
            question = query.question[0]
        except (dns.exception.DNSException, IndexError):
            return local
        if question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.ANY):
            return local
        if not self._covers(question.name):
            return local  # no zone of the registry holds it: asking would only cost it
        key = (
            question.name.canonicalize(),
            int(question.rdtype),
            int(question.rdclass),
            bool(query.ednsflags & dns.flags.DO),
        )
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None:
            elapsed = int(now - entry.stored_at)
            if elapsed < entry.ttl:
                self._entries.move_to_end(key)
                self.hits += 1
                return _aged(entry.message, query, elapsed)
            del self._entries[key]
        self.misses += 1
        return self._forward(query, query_wire, key, local)

    def purge(self, origin: dns.name.Name) -> int:
        """Forget every answer at or below ``origin``; returns how many."""
        gone = [key for key in self._entries if key[0].is_subdomain(origin)]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def zone_changed(self, origin: dns.name.Name, zone: object) -> None:
        """A ``StaticZones`` listener: a zone copied, changed or dropped purges its answers."""
        self.purge(origin)

    async def _forward(
        self, query: dns.message.Message, query_wire: bytes, key: Key, local: bytes
    ) -> bytes:
        peer = self._upstream()
        if peer is None:
            return _unreachable(query, "the registry is not known")
        try:
            wire = await doq_query(
                peer.address,
                b"\0\0" + query_wire[2:],
                expected_id=peer.node_id,
                identity=self._identity,
                timeout=FORWARD_TIMEOUT,
            )
            message = dns.message.from_wire(wire)
        except (HyperMeshError, dns.exception.DNSException) as exc:
            log.info("registry unreachable for a forwarded query", extra={"error": str(exc)})
            return _unreachable(query, str(exc))
        ttl = _cacheable_ttl(message)
        if ttl > 0:
            self._entries[key] = _Entry(message, self._clock(), ttl)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return query_wire[:2] + wire[2:]


def _cacheable_ttl(message: dns.message.Message) -> int:
    rcode = message.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return 0
    if message.answer:
        return min(r.ttl for r in (*message.answer, *message.authority))
    soa = next((r for r in message.authority if r.rdtype == dns.rdatatype.SOA), None)
    if soa is None:
        return 0  # a negative answer without an SOA may not be cached (RFC 2308 §5)
    return int(min(soa.ttl, soa[0].minimum))


def _aged(cached: dns.message.Message, query: dns.message.Message, elapsed: int) -> bytes:
    """The cached answer for ``query``: its ID, and every TTL lowered by ``elapsed``."""
    response = dns.message.from_wire(cached.to_wire())
    response.id = query.id
    for section in (response.answer, response.authority, response.additional):
        for rrset in section:
            rrset.ttl = max(0, rrset.ttl - elapsed)
    return response.to_wire()


def _unreachable(query: dns.message.Message, why: str) -> bytes:
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.SERVFAIL)
    if query.edns >= 0:
        ede = dns.edns.EDEOption(dns.edns.EDECode.NO_REACHABLE_AUTHORITY, why[:200])
        response.use_edns(0, 0, 1232, options=[ede])
    return response.to_wire()
