"""A node's mirror of its network's registry: subscribe, fetch increments, verify, serve.

``Follower.run`` keeps one HTTP/3 connection to the registry with a subscription to its change
feed (``GET /registry/v1/watch``, ``hypermesh.mirror.feed``). On every notice it fetches what
it lacks (``GET /registry/v1/ixfr?tld=ZONE&serial=HELD``: the journal's increments, or the whole
zone when the journal does not reach back), checks it against the registry's signed anchors
(``ZoneCopy``) and only then serves it. A copy that does not check out is refused and the last
good one kept.

When the registry cannot be reached the node keeps answering from its copies; zones it has no
copy of yet are fetched from other mirrors, which relay the registry's signed anchors, so a
mirror cannot forge a record. A copy not confirmed by the registry for longer than its SOA
expire (or the node's ``expire``, when shorter) is served stale (RFC 8767, EDE 3).

Every connection proves the node's own key in the handshake, so the registry's gates know
which member follows it (a public InterfacePolicy's ``from`` rules match it, its rate limits
count it apart from strangers). While the registry refuses that key (403, 429, or a TLS alert
refusing the certificate), ``refused`` says why and the node is not Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdatatype

from hypermesh.dns.source import StaticZones
from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.mirror.anchors import Anchors, BadAnchors
from hypermesh.mirror.feed import HEARTBEAT
from hypermesh.mirror.zonecopy import BadCopy, ZoneCopy
from hypermesh.registry.zones import JournalEntry
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import (
    AccessDenied,
    H3ClientProtocol,
    connect_h3,
    get_json,
    status_error,
)
from hypermesh.transport.feeds import feed_lines
from hypermesh.transport.identity import Identity

log = logging.getLogger("hypermesh.mirror")

API = "/registry/v1"
CONNECT_TIMEOUT = 5.0
"""Seconds to reach the registry (or a peer) before trying again or elsewhere."""
REQUEST_TIMEOUT = 30.0
"""Seconds one transfer may take."""
SILENCE = 3 * HEARTBEAT
"""A feed silent this long (three heartbeats missed: 30 s) is taken for dead: the mirror
connects again, and meanwhile takes what it lacks from other mirrors."""
RETRY = (0.2, 0.5, 1.0, 2.0)
"""Waits between attempts to reach the registry, the last repeated."""
STALE_MARGIN = 0.05
"""Seconds past a copy's expiry the stale marker wakes (so that the expiry has passed)."""
STALE_LOOK_MOST = 3600.0
"""The stale marker looks at the copies at least this often (a clock set back, say)."""
ERROR_BODY = 4096
"""Bytes of a refused watch's answer kept for the message."""


@dataclass(slots=True)
class Transfers:
    """How the copies were kept up to date (for ``/status`` and the tests)."""

    incremental: int = 0
    full: int = 0
    refused: int = 0
    from_mirrors: int = 0
    full_by_zone: dict[str, int] = field(default_factory=dict)
    """Whole copies taken from the registry, per zone."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "incremental": self.incremental,
            "full": self.full,
            "refused": self.refused,
            "fromMirrors": self.from_mirrors,
            "fullByZone": dict(self.full_by_zone),
        }


@dataclass(slots=True)
class _State:
    copies: dict[str, ZoneCopy] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    """The registry's serial of each zone, as last heard."""
    fresh_at: dict[str, float] = field(default_factory=dict)
    """When each copy was last confirmed current (wall clock)."""
    anchors: Anchors | None = None


class Follower:
    """Mirrors the registry's zones into ``zones``, proving ``identity`` (the node's key) on
    every connection.

    ``registry`` and ``peers`` are asked each time a connection is made, so a registry that
    moved (a restart on a new port) is found again.
    """

    def __init__(
        self,
        zones: StaticZones,
        registry: Callable[[], PeerRef | None],
        peers: Callable[[], Sequence[PeerRef]] = list,
        *,
        identity: Identity | None,
        expire: float | None = None,
        clock: Callable[[], float] = time.time,
        on_serial: Callable[[str, int], None] | None = None,
    ) -> None:
        self.zones = zones
        self.identity = identity
        self._registry = registry
        self._peers = peers
        self.expire = expire
        self.clock = clock
        self.on_serial = on_serial
        self.state = _State()
        self.transfers = Transfers()
        self.connected = False
        self.registry_address: str | None = None
        self.last_error: str | None = None
        self.refused: str | None = None
        """Why the registry refused this node's key at the last attempt (None: it did not)."""
        self._texts: dict[str, tuple[ZoneCopy, str]] = {}
        self._copies_changed = asyncio.Event()
        """Set when a copy was taken or refreshed: the stale marker looks at its due time anew."""
        self._marker_due = float("inf")
        """When (``clock``) the stale marker wakes next, if nothing wakes it before."""

    # -- what the node shows ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The mirror's part of ``GET /status``."""
        stale = {str(o) for o in self.zones.stale}
        return {
            "registry": self.registry_address,
            "connected": self.connected,
            "zones": {
                name: {
                    "serial": copy.serial,
                    "registrySerial": self.state.known.get(name),
                    "stale": name in stale,
                }
                for name, copy in sorted(self.state.copies.items())
            },
            "transfers": self.transfers.to_dict(),
            "lastError": self.last_error,
            "refused": self.refused,
        }

    def anchors_document(self) -> dict[str, str] | None:
        """The registry's signed anchors, to relay unchanged to other mirrors."""
        anchors = self.state.anchors
        return None if anchors is None else anchors.signed

    def zone_text(self, name: str) -> tuple[int, str] | None:
        """The serial and master-file text of the copy of ``name``, for other mirrors."""
        copy = self.state.copies.get(name)
        if copy is None:
            return None
        cached = self._texts.get(name)
        if cached is None or cached[0] is not copy:
            cached = self._texts[name] = (copy, copy.zone.to_text())
        return copy.serial, cached[1]

    def revoked(self, node_id: str) -> bool:
        """Whether the registry's anchors (the newest this node holds) revoke ``node_id``."""
        anchors = self.state.anchors
        return anchors is not None and node_id in anchors.revoked

    def member_entries(self) -> Mapping[str, Mapping[str, Any]]:
        """The network's members as the registry's anchors (the newest this node holds) name
        them: ``{name: {"identity", "kind", "tags"}}``; empty before any anchors."""
        anchors = self.state.anchors
        return {} if anchors is None else anchors.members

    def members(self) -> dict[str, str]:
        """Node ID → name of every member the registry's anchors name (static members of the
        registry node's config and the nodes that joined with a token)."""
        return {
            identity: name
            for name, entry in self.member_entries().items()
            if isinstance(identity := entry.get("identity"), str)
        }

    def knows(self, name: dns.name.Name) -> bool:
        """Whether ``name`` falls in a zone the registry serves (by its anchors and notices)."""
        anchors = self.state.anchors
        zones = set(self.state.known) | (set(anchors.zones) if anchors else set())
        return any(name.is_subdomain(dns.name.from_text(zone)) for zone in zones)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the registry until cancelled."""
        attempt = 0
        while True:
            peer = self._registry()
            if peer is None or peer.node_id is None:
                self.last_error = "the registry is not known (not running, or no identity)"
                self.refused = None
            else:
                self.registry_address = peer.address
                try:
                    await self._follow(peer)
                    attempt = 0
                except AccessDenied as exc:
                    self.last_error = self.refused = str(exc)
                    log.warning("the registry refused this node", extra={"error": str(exc)})
                except (HyperMeshError, TimeoutError, ValueError) as exc:
                    self.last_error = str(exc) or type(exc).__name__
                    self.refused = None
                    log.info("registry unreachable", extra={"error": self.last_error})
            self.connected = False
            await self._from_mirrors(peer.node_id if peer else None)
            await asyncio.sleep(RETRY[min(attempt, len(RETRY) - 1)])
            attempt += 1

    async def keep_marking_stale(self) -> None:
        """Mark copies past their expiry as stale (and fresh ones not), until cancelled: it
        wakes when the next fresh copy comes to its expiry, or when a copy is taken or
        refreshed (``mark_stale``), and not otherwise."""
        while True:
            self._copies_changed.clear()
            self._mark()
            wait = self.next_expiry()
            self._marker_due = self.clock() + wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._copies_changed.wait(), wait)

    def next_expiry(self) -> float:
        """Seconds until the next fresh copy passes its expiry (a little after, so that it
        has passed when looked at); ``STALE_LOOK_MOST`` when no copy is fresh."""
        now = self.clock()
        left = [
            self.state.fresh_at.get(name, 0.0) + self._expire_of(copy) - now
            for name, copy in self.state.copies.items()
        ]
        due = min((t for t in left if t >= 0), default=STALE_LOOK_MOST)
        return min(due + STALE_MARGIN, STALE_LOOK_MOST)

    def mark_stale(self) -> None:
        """Mark copies past their expiry as stale now; the stale marker then waits anew."""
        self._mark()
        self._copies_changed.set()

    def _mark(self) -> None:
        now = self.clock()
        stale = [
            dns.name.from_text(name)
            for name, copy in self.state.copies.items()
            if now - self.state.fresh_at.get(name, 0.0) > self._expire_of(copy)
        ]
        self.zones.set_stale(stale)

    def _expire_of(self, copy: ZoneCopy) -> float:
        soa = copy.zone.get_rdataset("@", dns.rdatatype.SOA)
        expire = float(soa[0].expire) if soa is not None else 86400.0
        return expire if self.expire is None else min(expire, self.expire)

    async def _follow(self, peer: PeerRef) -> None:
        assert peer.node_id is not None
        async with asyncio.timeout(CONNECT_TIMEOUT) as deadline:
            async with connect_h3(
                peer.address, expected_id=peer.node_id, identity=self.identity
            ) as h3:
                deadline.reschedule(None)
                await self._refresh_anchors(h3, peer.node_id)
                async with h3.subscribe("GET", f"{API}/watch") as (status, _, pieces):
                    if status != 200:
                        body = await _head(pieces, ERROR_BODY)
                        raise status_error(peer.address, f"GET {API}/watch", status, body)
                    self.connected = True
                    self.last_error = self.refused = None
                    async for notice in feed_lines(pieces, SILENCE, heartbeats=True, probe=h3.ping):
                        await self._on_notice(h3, peer.node_id, notice)
                raise TransportError(f"{peer.address}: the registry ended the watch")

    async def _on_notice(self, h3: H3ClientProtocol, registry: str, notice: Any) -> None:
        if not isinstance(notice, dict):
            return
        if "serials" in notice and isinstance(notice["serials"], dict):
            serials = {str(k): int(v) for k, v in notice["serials"].items()}
            for name in list(self.state.copies):
                if name not in serials:
                    self._drop(name)
            for name, serial in serials.items():
                await self._sync(h3, registry, name, serial)
                self._fresh([name])  # caught up: fresh now, not after the other zones' syncs
        elif isinstance(notice.get("revoked"), str) or "members" in notice:
            await self._refresh_anchors(h3, registry)  # the anchors list both
        elif isinstance(notice.get("zone"), str):
            name, announced = notice["zone"], notice.get("serial")
            if announced is None:
                self._drop(name)
            else:
                await self._sync(h3, registry, name, int(announced))
        self._fresh(list(self.state.copies))

    def _fresh(self, names: list[str]) -> None:
        """The registry has just spoken: each of ``names`` whose copy is at the serial it
        knows is fresh as of now; the stale marks follow at once. A copy that was fresh
        already only expires later now: the stale marker, armed for its earlier expiry, is
        not woken for it (a heartbeat wakes nothing but the feed's reader)."""
        now = self.clock()
        wake = False
        for name in names:
            copy = self.state.copies.get(name)
            if copy is not None and copy.serial >= self.state.known.get(name, 0):
                before, expire = self.state.fresh_at.get(name), self._expire_of(copy)
                wake = (
                    wake
                    or before is None
                    or now - before > expire  # it was stale
                    or now + expire + STALE_MARGIN < self._marker_due  # a shorter expire
                )
                self.state.fresh_at[name] = now
        if wake:
            self.mark_stale()

    async def _refresh_anchors(self, h3: H3ClientProtocol, registry: str) -> Anchors:
        data = await _get_json(h3, f"{API}/anchors")
        anchors = Anchors.verify(data, registry)
        self.state.anchors = anchors
        return anchors

    async def _sync(self, h3: H3ClientProtocol, registry: str, name: str, serial: int) -> None:
        self.state.known[name] = max(serial, self.state.known.get(name, 0))
        copy = self.state.copies.get(name)
        if copy is not None and copy.serial >= serial:
            return
        anchors = self.state.anchors
        if anchors is None or name not in anchors.zones:
            anchors = await self._refresh_anchors(h3, registry)
        if name not in anchors.zones:
            raise BadAnchors(f"the registry notified {name} but its anchors do not name it")
        ds = anchors.zones[name].ds
        held = copy.serial if copy is not None and tuple(copy.ds) == tuple(ds) else 0
        for attempt in (held, 0) if held else (0,):
            query = urllib.parse.urlencode({"tld": name, "serial": attempt})
            data = await _get_json(h3, f"{API}/ixfr?{query}")
            try:
                if "entries" in data and copy is not None and attempt:
                    new = copy.advanced(_entries(name, data["entries"]))
                    self.transfers.incremental += 1
                else:
                    new = await asyncio.to_thread(
                        ZoneCopy.from_text, str(data.get("zone", "")), name, ds
                    )
                    self.transfers.full += 1
                    self.transfers.full_by_zone[name] = self.transfers.full_by_zone.get(name, 0) + 1
            except BadCopy as exc:
                # Refused, the last good copy kept. An increment that does not apply (the
                # registry re-signed its zones on a restart) is followed by a whole zone.
                self.transfers.refused += 1
                log.warning("copy refused", extra={"zone": name, "error": str(exc)})
                self.last_error = str(exc)
                continue
            self._install(name, new)
            return

    def _install(self, name: str, copy: ZoneCopy) -> None:
        self.state.copies[name] = copy
        self.zones.set(copy.zone)
        log.info("zone applied", extra={"zone": name, "serial": copy.serial})
        if self.on_serial is not None:
            self.on_serial(name, copy.serial)

    def _drop(self, name: str) -> None:
        self.state.copies.pop(name, None)
        self.state.known.pop(name, None)
        self.zones.remove(name)

    async def _from_mirrors(self, registry: str | None) -> None:
        """With the registry out of reach: fetch from other mirrors what the registry's
        newest anchors name and this node lacks, each copy checked against those anchors."""
        if registry is None:
            return
        for peer in self._peers():
            if not peer.node_id:
                continue
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    async with connect_h3(
                        peer.address, expected_id=peer.node_id, identity=self.identity
                    ) as h3:
                        await self._copy_from(h3, registry)
            except (HyperMeshError, TimeoutError, ValueError) as exc:
                log.debug("mirror unreachable", extra={"peer": peer.address, "error": str(exc)})
                continue
            anchors = self.state.anchors
            if anchors is not None and all(
                n in self.state.copies and self.state.copies[n].serial >= a.serial
                for n, a in anchors.zones.items()
            ):
                return

    async def _copy_from(self, h3: H3ClientProtocol, registry: str) -> None:
        anchors = Anchors.verify(await _get_json(h3, f"{API}/anchors"), registry)
        current = self.state.anchors
        if current is None or anchors.issued_at > current.issued_at:
            self.state.anchors = current = anchors
        for name, anchor in current.zones.items():
            copy = self.state.copies.get(name)
            if copy is not None and copy.serial >= anchor.serial:
                continue
            query = urllib.parse.urlencode({"tld": name, "serial": 0})
            data = await _get_json(h3, f"{API}/ixfr?{query}")
            try:
                new = await asyncio.to_thread(
                    ZoneCopy.from_text, str(data.get("zone", "")), name, anchor.ds
                )
            except BadCopy as exc:
                self.transfers.refused += 1
                log.warning("copy from a mirror refused", extra={"zone": name, "error": str(exc)})
                continue
            if copy is not None and new.serial <= copy.serial:
                continue
            self.transfers.from_mirrors += 1
            self.state.known[name] = max(anchor.serial, self.state.known.get(name, 0))
            # As fresh as the registry's own word about it, no fresher.
            self.state.fresh_at[name] = max(
                self.state.fresh_at.get(name, 0.0), min(anchors.issued_at, self.clock())
            )
            self._install(name, new)
        self.mark_stale()


async def _get_json(h3: H3ClientProtocol, path: str) -> dict[str, Any]:
    return await get_json(h3, path, timeout=REQUEST_TIMEOUT)


async def _head(pieces: AsyncIterator[bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes of a streamed answer (an error's body)."""
    head = b""
    with contextlib.suppress(TransportError, TimeoutError):
        async with asyncio.timeout(CONNECT_TIMEOUT):
            async for piece in pieces:
                head += piece
                if len(head) >= limit:
                    break
    return head[:limit]


def _entries(name: str, raw: Any) -> list[JournalEntry]:
    if not isinstance(raw, list):
        raise BadCopy(f"{name}: the increments are not a list")
    try:
        return [
            JournalEntry(
                name,
                int(e["from"]),
                int(e["to"]),
                tuple(str(r) for r in e["removed"]),
                tuple(str(a) for a in e["added"]),
            )
            for e in raw
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadCopy(f"{name}: an increment is malformed: {exc!r}") from None
