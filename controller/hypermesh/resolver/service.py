"""The stub resolver at work: the core's decisions carried out, with the mesh and the
upstreams asked and the answers counted.

``Resolver.handle(wire, udp=…)`` is what both listeners (``listen.py``) call for each query. It
never raises: a node or an upstream that fails becomes SERVFAIL with extended DNS error 22,
*No Reachable Authority*, and the next query is served as usual.

Where the mesh's answers come from is a ``MeshSource``: the node the stub runs in
(``hypermesh.node.features.resolver``) or a node asked over DNS over QUIC with its key pinned
(``DoqSource``, for ``hmctl resolver run``). Either way the answer is checked here, from the
registry's anchors, which the source provides already verified against the registry's key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from hypermesh.errors import HyperMeshError
from hypermesh.mirror.anchors import Anchors
from hypermesh.resolver import core
from hypermesh.resolver.core import Outcome, Query, Reply, Route
from hypermesh.resolver.upstreams import Upstreams, UpstreamUnreachable

log = logging.getLogger("hypermesh.resolver")

MAX_KEYS_TTL = 300
"""Seconds a zone's DNSKEY answer is kept (less when its TTL says so)."""
WIRE_FRESH = 1.0
"""Seconds a rendered answer is sent again as it is to the same query bytes (its TTLs then
count down by whole seconds through the answer cache)."""
MAX_WIRE = 10_000
"""Rendered answers kept for ``WIRE_FRESH``."""


class MeshSource(Protocol):
    """Where HyperMesh names are asked: a node of the network."""

    def describe(self) -> str:
        """Where it asks, for the status (``node alpha``, ``127.0.0.1:4433 (node …)``)."""
        ...

    async def anchors(self) -> Anchors | None:
        """The registry's anchors, verified against its key; None while none are held."""
        ...

    async def ask(self, query: dns.message.Message) -> dns.message.Message:
        """The node's answer to ``query``; ``HyperMeshError`` when it cannot be had."""
        ...


@dataclass(frozen=True, slots=True)
class Settings:
    """How the stub answers (``ResolverConfig`` in a node's config, or ``hmctl resolver run``'s
    options)."""

    listen: str
    """Where it listens, UDP and TCP, ``host:port``."""
    forward: bool = True
    """Whether names outside the mesh go to the upstreams (else REFUSED)."""
    max_inflight: int = 256
    """Queries answered at once; UDP queries beyond it are dropped (the client asks again)."""
    max_tcp: int = 64
    """TCP connections held at once; more are closed at once."""
    tcp_idle: float = 10.0
    """Seconds a TCP connection may stay silent (RFC 7766 §6.2.3)."""
    tcp_pipeline: int = 16
    """Queries of one TCP connection answered at once (RFC 7766 §6.2.1.1)."""
    mesh_timeout: float = 3.0
    """Seconds to wait for the node's answer."""


@dataclass
class Counts:
    """What the stub has done since it started (for ``hmctl resolver status``)."""

    queries: int = 0
    udp: int = 0
    tcp: int = 0
    verified: int = 0
    bogus: int = 0
    forwarded: int = 0
    refused: int = 0
    unreachable: int = 0
    malformed: int = 0
    truncated: int = 0
    dropped: int = 0
    cache_hits: int = 0
    last_failure: str | None = None

    def count(self, outcome: Outcome) -> None:
        name = outcome.value
        setattr(self, name, getattr(self, name) + 1)


@dataclass(slots=True)
class _Keys:
    message: dns.message.Message
    stored_at: float
    ttl: int


class Resolver:
    """Answers one client query at a time from ``mesh`` and ``upstreams`` (see the module)."""

    def __init__(
        self,
        settings: Settings,
        mesh: MeshSource,
        upstreams: Upstreams,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.mesh = mesh
        self.upstreams = upstreams
        self.counts = Counts()
        self.cache = core.AnswerCache()
        self._clock, self._wall = clock, wall
        self._keys: dict[dns.name.Name, _Keys] = {}
        self._inflight = 0
        self._serial: tuple[tuple[str, int], ...] = ()
        self._wire: OrderedDict[bytes, tuple[bytes, float, Outcome]] = OrderedDict()

    @property
    def busy(self) -> bool:
        """Whether ``max_inflight`` queries are being answered now."""
        return self._inflight >= self.settings.max_inflight

    async def handle(self, wire: bytes, *, udp: bool) -> bytes | None:
        """The answer to the client's ``wire`` (fitted to UDP when ``udp``); None: send
        nothing. Never raises."""
        quick = self.quick(wire, udp=udp)
        if quick is not None:
            return quick
        self.counts.queries += 1
        key = (b"u" if udp else b"t") + wire[2:]
        self._inflight += 1
        try:
            parsed = core.parse(wire)
            if parsed is None:
                self.counts.malformed += 1
                return None
            if isinstance(parsed, Reply):
                self.counts.count(parsed.outcome)
                return parsed.wire
            reply, outcome = await self._answer(parsed)
            self.counts.count(outcome)
            data, truncated = core.fit(reply, parsed.udp_limit() if udp else core.MAX_MESSAGE)
            self.counts.truncated += truncated
            if outcome in (Outcome.VERIFIED, Outcome.FORWARDED):
                self._keep_rendered(key, data, reply, outcome)
            return data
        except Exception as exc:  # a bug here must cost one answer, never the listener
            log.exception("resolver failed on a query")
            self.counts.last_failure = f"internal error: {exc!r}"[:200]
            return None
        finally:
            self._inflight -= 1

    def quick(self, wire: bytes, *, udp: bool) -> bytes | None:
        """The answer rendered less than ``WIRE_FRESH`` ago for the same query bytes (but the
        ID), with this query's ID; None when there is none (ask ``handle``). Counted as
        answered when found."""
        rendered = self._wire.get((b"u" if udp else b"t") + wire[2:])
        if rendered is None or len(wire) < 12 or self._clock() >= rendered[1]:
            return None
        self.counts.queries += 1
        self.counts.cache_hits += 1
        self.counts.count(rendered[2])
        return wire[:2] + rendered[0][2:]

    def _keep_rendered(
        self, key: bytes, data: bytes, reply: dns.message.Message, outcome: Outcome
    ) -> None:
        ttl = core.cache_ttl(reply)
        if ttl > 0:
            self._wire[key] = (data, self._clock() + min(WIRE_FRESH, ttl), outcome)
            while len(self._wire) > MAX_WIRE:
                self._wire.popitem(last=False)

    async def _answer(self, query: Query) -> tuple[dns.message.Message, Outcome]:
        anchors = await self._anchors()
        zones = anchors.zones if anchors is not None else {}
        where = core.route(query, zones, forward=self.settings.forward)
        if where is Route.REFUSE:
            return core.refused(query), Outcome.REFUSED
        cached = self.cache.get(query, self._clock())
        if cached is not None:
            self.counts.cache_hits += 1
            return cached
        if where is Route.MESH:
            assert anchors is not None
            reply, outcome = await self._from_mesh(query, anchors)
        else:
            reply, outcome = await self._forwarded(query)
        if outcome in (Outcome.VERIFIED, Outcome.FORWARDED):
            self.cache.put(query, reply, outcome, self._clock())
        return reply, outcome

    async def _anchors(self) -> Anchors | None:
        try:
            anchors = await self.mesh.anchors()
        except HyperMeshError as exc:
            self.counts.last_failure = f"anchors: {exc}"[:200]
            return None
        if anchors is not None:
            serial = tuple(sorted((z, a.serial) for z, a in anchors.zones.items()))
            if serial != self._serial:  # a zone changed: what was kept may be old
                self._serial = serial
                self.cache.clear()
                self._keys.clear()
                self._wire.clear()
        return anchors

    async def _from_mesh(
        self, query: Query, anchors: Anchors
    ) -> tuple[dns.message.Message, Outcome]:
        zone = core.zone_of(query.name, anchors.zones)
        assert zone is not None
        try:
            async with asyncio.timeout(self.settings.mesh_timeout):
                response = await self.mesh.ask(core.mesh_question(query))
                keys = await self._zone_keys(zone)
        except (HyperMeshError, TimeoutError) as exc:
            why = str(exc) or f"no answer within {self.settings.mesh_timeout:g}s"
            self.counts.last_failure = f"{self.mesh.describe()}: {why}"[:200]
            code = dns.edns.EDECode.NO_REACHABLE_AUTHORITY
            return core.failure(query, code, f"{self.mesh.describe()}: {why}"), Outcome.UNREACHABLE
        reply = core.verified_reply(query, response, keys, anchors, self._wall())
        if reply.rcode() == dns.rcode.SERVFAIL:
            self._keys.pop(zone, None)  # the keys may have rolled: ask again next time
            self.counts.last_failure = f"{query.name} {dns.rdatatype.to_text(query.rdtype)}: bogus"
            log.warning("a HyperMesh answer failed verification", extra={"qname": str(query.name)})
            return reply, Outcome.BOGUS
        return reply, Outcome.VERIFIED

    async def _zone_keys(self, zone: dns.name.Name) -> dns.message.Message:
        now = self._clock()
        kept = self._keys.get(zone)
        if kept is not None and now - kept.stored_at < kept.ttl:
            return kept.message
        message = await self.mesh.ask(core.keys_question(zone))
        ttl = min([MAX_KEYS_TTL, *(r.ttl for r in message.answer)])
        self._keys[zone] = _Keys(message, now, ttl)
        return message

    async def _forwarded(self, query: Query) -> tuple[dns.message.Message, Outcome]:
        asked = dns.message.make_query(
            query.name,
            query.rdtype,
            use_edns=0 if query.edns else False,
            want_dnssec=query.do,
            payload=core.UDP_PAYLOAD,
            id=random.SystemRandom().randrange(65536),
        )
        asked.flags |= query.message.flags & int(dns.flags.CD)
        try:
            answer = await self.upstreams.ask(asked)
        except UpstreamUnreachable as exc:
            self.counts.last_failure = f"upstreams: {exc}"[:200]
            code = dns.edns.EDECode.NO_REACHABLE_AUTHORITY
            return core.failure(query, code, str(exc)), Outcome.UNREACHABLE
        return core.forwarded_reply(query, answer), Outcome.FORWARDED

    def status(self) -> dict[str, object]:
        """What ``hmctl resolver status`` shows."""
        counts = self.counts
        return {
            "listen": self.settings.listen,
            "mesh": self.mesh.describe(),
            "zones": sorted(self._zones()),
            "forward": self.settings.forward,
            "upstreams": self.upstreams.state() if self.settings.forward else [],
            "counts": {
                "queries": counts.queries,
                "udp": counts.udp,
                "tcp": counts.tcp,
                "verified": counts.verified,
                "bogus": counts.bogus,
                "forwarded": counts.forwarded,
                "refused": counts.refused,
                "unreachable": counts.unreachable,
                "malformed": counts.malformed,
                "truncated": counts.truncated,
                "dropped": counts.dropped,
                "cacheHits": counts.cache_hits,
            },
            "cached": len(self.cache),
            "lastFailure": counts.last_failure,
        }

    def _zones(self) -> list[str]:
        return [zone for zone, _ in self._serial]
