"""The node's Prometheus metrics, served as text at ``GET /metrics``.

prometheus-client keeps the registry and writes the exposition format; each node has its own
``CollectorRegistry`` (never the process-global one). The DNS counters read the query type and
the rcode straight from the answer's bytes: no message is parsed again on the hot path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hypermesh.node.readiness import readiness
from hypermesh.node.router import Request, Router, RouteResponse

_QTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    43: "DS",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    52: "TLSA",
    63: "ZONEMD",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
    257: "CAA",
}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

SyncDnsHandler = Callable[[bytes], bytes | None]
"""A ``DnsHandler`` that answers at once: query wire bytes in, answer wire bytes (or None) out."""


def question_type(message: bytes) -> str:
    """The type of the first question of a DNS message, read from its bytes ("other" when it
    cannot be read or is not a well-known type)."""
    if len(message) < 12 or message[4:6] == b"\0\0":
        return "none"
    offset = 12
    while offset < len(message):
        length = message[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0:
            offset += 2
            break
        offset += 1 + length
    if offset + 2 > len(message):
        return "other"
    return _QTYPES.get(int.from_bytes(message[offset : offset + 2], "big"), "other")


def response_code(message: bytes) -> str:
    """The rcode in a DNS message's header (without EDNS extended bits)."""
    if len(message) < 4:
        return "none"
    return _RCODES.get(message[3] & 0x0F, "other")


class NodeMetrics:
    """Every metric of one node."""

    def __init__(self, *, name: str, network: str, identity: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._before_render: list[Callable[[], Awaitable[None]]] = []
        """What reads figures off the event loop before each render (the registry's)."""
        self.queries = Counter(
            "hypermesh_dns_queries",
            "DNS queries answered, by transport, query type and rcode.",
            ["transport", "qtype", "rcode"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hypermesh_dns_query_seconds",
            "Time to answer one DNS query inside the node (not counting the network).",
            ["transport"],
            buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1),
            registry=self.registry,
        )
        self.registrations = Counter(
            "hypermesh_registry_registrations",
            "TLD registrations accepted by this node's registry.",
            registry=self.registry,
        )
        self.serials = Gauge(
            "hypermesh_zone_serial",
            "SOA serial of each zone this node serves.",
            ["zone"],
            registry=self.registry,
        )
        self.unservable = Gauge(
            "hypermesh_registry_zone_unservable",
            "1 for an active TLD whose stored data does not build into a zone (not served), "
            "0 once it is served.",
            ["zone"],
            registry=self.registry,
        )
        info = Gauge(
            "hypermesh_node_info",
            "Constant 1, labelled with what this node is.",
            ["name", "network", "identity", "version"],
            registry=self.registry,
        )
        info.labels(name, network, identity, version).set(1)
        Gauge(
            "hypermesh_node_start_time_seconds",
            "When this node process started, seconds since the epoch.",
            registry=self.registry,
        ).set(time.time())

    def observe(self, transport: str, answer: bytes | None, seconds: float) -> None:
        """Count one answered query."""
        if answer is None:
            self.queries.labels(transport, "none", "dropped").inc()
        else:
            self.queries.labels(transport, question_type(answer), response_code(answer)).inc()
        self.latency.labels(transport).observe(seconds)

    def metered(self, transport: str, answer: SyncDnsHandler) -> SyncDnsHandler:
        """``answer`` with every call counted under ``transport``."""

        def metered_answer(query: bytes) -> bytes | None:
            started = time.perf_counter()
            result = answer(query)
            self.observe(transport, result, time.perf_counter() - started)
            return result

        return metered_answer

    def zone_serial(self, zone: str, serial: int) -> None:
        """Record the serial a zone is served at (the registry and mirrors call this)."""
        self.serials.labels(zone).set(serial)

    def zone_problem(self, zone: str, problem: str | None) -> None:
        """Record whether the registry can serve ``zone`` (``problem`` is why not, or None)."""
        self.unservable.labels(zone).set(0 if problem is None else 1)

    def registration(self) -> None:
        """Count one accepted TLD registration."""
        self.registrations.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def render_now(self) -> bytes:
        """``render``, the registry's figures first read on its writer thread (a scrape never
        holds the event loop on the registry's database)."""
        for read in self._before_render:
            await read()
        return self.render()

    def watch_node(self, node: NodeState) -> None:
        """Export, read at each scrape, whether ``node`` is ready and how fresh its mirror's
        copies are (``hypermesh_node_ready``, ``hypermesh_mirror_*``)."""
        self.registry.register(NodeStateCollector(node))

    def watch_registry(self, registry: RegistrySource) -> None:
        """Export, read at each scrape, the registry's TLD expiries and how fresh the node
        records in its directory are (``hypermesh_registry_tld_expiry_timestamp_seconds``,
        ``hypermesh_directory_*``)."""
        collector = RegistryCollector(registry)
        self.registry.register(collector)
        self._before_render.append(collector.read)


class NodeState(Protocol):
    """What ``NodeStateCollector`` reads of a running node (a ``NodeContext``)."""

    mirror: Any
    chains: Any


class NodeStateCollector(Collector):
    """Readiness and the mirror's freshness, read at scrape time (nothing on the hot path)."""

    def __init__(self, node: NodeState) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        ready = readiness(self.node.mirror, self.node.chains).get("ready") is True
        yield GaugeMetricFamily(
            "hypermesh_node_ready",
            "1 when the node is ready (its /status readiness), 0 when its network refuses it.",
            value=1 if ready else 0,
        )
        follower = self.node.mirror
        if follower is None:
            return
        yield GaugeMetricFamily(
            "hypermesh_mirror_connected",
            "1 while this mirror holds a connection to its registry (or a peer mirror).",
            value=1 if follower.connected else 0,
        )
        age = GaugeMetricFamily(
            "hypermesh_mirror_zone_age_seconds",
            "Seconds since this mirror's copy of each zone was last confirmed current.",
            labels=["zone"],
        )
        now = follower.clock()
        fresh_at: Mapping[str, float] = follower.state.fresh_at
        for zone in sorted(follower.state.copies):
            age.add_metric([zone], max(0.0, now - fresh_at.get(zone, 0.0)))
        yield age


class RegistrySource(Protocol):
    """What ``RegistryCollector`` reads of a registry (``hypermesh.registry.service.Registry``)."""

    clock: Callable[[], float]

    worker: Any
    """Where the registry's database calls run (``registry.worker.Worker``)."""

    def list_tlds(self) -> Iterable[Any]: ...

    def transaction(self) -> contextlib.AbstractContextManager[Any]: ...


_RegistryFigures = tuple[list[tuple[str, float]], int, int, float | None]
"""The active TLDs' expiries; the directory's live and stale records and its next expiry."""

STALE_PART = 0.75
"""A live record past this part of its lifetime is stale: its node refreshes it at half."""


class RegistryCollector(Collector):
    """The registry's TLD expiries and its directory's freshness, read at scrape time (the
    directory's in one aggregate query, whatever its size)."""

    def __init__(self, registry: RegistrySource) -> None:
        self.registry = registry
        self._figures: _RegistryFigures | None = None

    async def read(self) -> None:
        """Read the figures on the registry's writer thread, for the next ``collect``."""
        self._figures = await self.registry.worker.run(self._read)

    def _read(self) -> _RegistryFigures:
        expiries = [
            (tld.name, tld.expires_at.timestamp())
            for tld in self.registry.list_tlds()
            if tld.status == "active"
        ]
        return expiries, *self._records(self.registry.clock())

    def collect(self) -> Iterator[Metric]:
        figures, self._figures = self._figures or self._read(), None
        expiries, live, stale, next_expiry = figures
        expiry = GaugeMetricFamily(
            "hypermesh_registry_tld_expiry_timestamp_seconds",
            "When each active TLD's registration expires, seconds since the epoch.",
            labels=["tld"],
        )
        for name, expires in expiries:
            expiry.add_metric([name], expires)
        yield expiry
        yield GaugeMetricFamily(
            "hypermesh_directory_records",
            "Live node records in this registry's directory.",
            value=live,
        )
        yield GaugeMetricFamily(
            "hypermesh_directory_records_stale",
            "Live node records past three quarters of their lifetime (their node did not "
            "refresh them at half): the node is down or cannot reach its registry.",
            value=stale,
        )
        first = GaugeMetricFamily(
            "hypermesh_directory_next_expiry_timestamp_seconds",
            "When the next live node record (a node key's entry in the directory) expires "
            "(no sample while there is none).",
        )
        if next_expiry is not None:
            first.add_metric([], next_expiry)
        yield first

    def _records(self, now: float) -> tuple[int, int, float | None]:
        # Imported here: only a registry's node reads its directory (others never load them).
        from sqlalchemy import case, func, select
        from sqlmodel import col

        from hypermesh.registry.tables import NodeRecordRow as Row

        issued, expires = col(Row.issued_at), col(Row.expires_at)
        due = (1 - STALE_PART) * issued + STALE_PART * expires
        query = select(
            func.count(), func.sum(case((due < now, 1), else_=0)), func.min(expires)
        ).where(expires > now)
        with self.registry.transaction() as session:
            live, stale, first = session.execute(query).one()
        return int(live), int(stale or 0), None if first is None else float(first)


def add_metrics_route(router: Router, metrics: NodeMetrics) -> Router:
    """``GET /metrics``: the Prometheus text exposition format."""

    async def serve_metrics(_: Request) -> RouteResponse:
        return RouteResponse(200, await metrics.render_now(), CONTENT_TYPE_LATEST)

    router.add("/metrics", serve_metrics)
    return router
