"""A node's paths to its peers: dialled by key, direct where the network allows it, through a
relay where it does not, and moved from the relay to the direct path once a hole is punched.

**Dialling** a node ID (``PathManager.link``) reads the peer's node record (its local and
reflexive addresses and its home relay) and races QUIC handshakes, all from the node's one UDP
socket (``MeshEndpoint``): each address at once (50 ms apart), and, 250 ms later, the same
connection through the peer's home relay (``transport.relayclient.RelayLink``: the relay
forwards the packets of a QUIC connection that runs end to end between the two nodes). The
first handshake whose peer proves the key wins; the others are closed.

**Punching.** A relayed connection at once tries for a direct one (``_punch``), as libp2p's
DCUtR does, over the relayed connection itself: ``POST /paths/v1/punch`` gives the peer this
node's candidates (local and reflexive addresses) and a token; the peer answers with its own
and starts sending probes (``node.punch``) to this node's candidates, which opens its NAT for
them. This node does not wait for the answer: with the request it probes the candidates the
peer's record names and starts QUIC handshakes to them (opening its own NAT; the peer's NAT
drops these first Initials unless it filters nothing). When a probe of the peer's arrives —
half a relayed round trip later, the peer's NAT now open — the handshake to that address sends
its first flight again, byte for byte (``MeshEndpoint.resend_first_flight``), rather than wait
the second that QUIC's own recovery would; a probe from an address not yet tried (the
peer-reflexive address: where a NAT that maps each destination anew really sends from) starts
a handshake there; the answer does the same for the candidates it names. The first handshake
that completes is the direct path.

**Upgrade without failing a request.** New requests go to the direct connection at once; the
relayed one is closed once the requests in flight on it have been answered (at most 30 s).
When the direct path dies (a keepalive unanswered, a request failing, or a request unanswered
for a second while a PING goes unacknowledged for two more), the link falls back to the relay
and punches again, with a backoff; a change of the node's own addresses punches again at once.
Keepalives (QUIC PING) go on direct paths and to the home relay every ``keepalive`` seconds
(25 by default, below the 30 s that NATs commonly keep an idle UDP mapping), and only while
the link is in use: a link idle for 5 minutes is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioquic.quic.connection import NetworkAddress

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.node import punch
from hypermesh.node.punch import Attempt
from hypermesh.timefmt import rfc3339
from hypermesh.transport.client import H3ClientProtocol
from hypermesh.transport.endpoint import MeshEndpoint, describe, virtual_address
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord
from hypermesh.transport.portmap import PortMapping
from hypermesh.transport.relayclient import RelayLink

log = logging.getLogger("hypermesh.paths")

STAGGER = 0.05
"""Seconds between the handshakes to a peer's addresses."""
RELAY_DELAY = 0.25
"""Seconds the relayed handshake waits for a direct one to win (none when there is no address)."""
DIAL_TIMEOUT = 10.0
PUNCH_TIMEOUT = 3.0
"""Seconds a punch attempt may take from its request to its direct handshake."""
DRAIN_TIMEOUT = 30.0
PING_TIMEOUT = 5.0
IDLE_LINK = 300.0
REPUNCH_BACKOFF = (5.0, 30.0, 120.0, 600.0)
"""Seconds before punching again after 1, 2, 3, 4+ failed attempts."""
RECORD_CACHE = 30.0
STALL = 1.0
"""Seconds a request on a direct path waits for its answer before asking whether the path is
alive (a PING; the request itself goes on waiting)."""
STALL_PING = 2.0
"""Seconds that PING may take before the direct path is taken for dead."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods sent again through the relay after the direct path died under them (RFC 9110
§9.2.2)."""
RELAY_READY = 5.0
"""Seconds to wait for a relay attachment before a relayed handshake gives up."""
RELAYED_CHECK = 1.0
"""Seconds a handshake through a relay goes unanswered before the relay link is checked."""

Won = tuple[str, H3ClientProtocol, NetworkAddress]
"""How a handshake won a race: ``direct`` or ``relayed``, the connection, where it goes."""
Locate = Callable[[str], Awaitable[NodeRecord | None]]
"""A node ID (or a member's name) → its verified, live node record, or None."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a peer may be reached: what ``_connect`` needs of a node record."""

    node_id: str
    name: str
    addresses: tuple[str, ...]
    reflexive: tuple[str, ...] = ()
    relay_id: str | None = None
    relay_addresses: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: NodeRecord) -> Target:
        return cls(
            record.node_id,
            record.name,
            record.addresses,
            record.reflexive,
            record.relay_id,
            record.relay_addresses,
        )


class _PathDead(Exception):
    """A direct path stopped answering under a request."""


class PeerNotFound(HyperMeshError):
    """The peer has no live record in the node directory."""


def alive(protocol: H3ClientProtocol | None) -> bool:
    """Whether a connection may still carry requests."""
    return (
        protocol is not None
        and protocol.close_reason is None
        and protocol.quic._close_event is None
        and protocol.quic._state.name not in ("CLOSING", "DRAINING", "TERMINATED")
    )


@dataclass(eq=False)
class PeerLink:
    """What this node holds of one peer: its connection(s) and how it got them."""

    node_id: str
    name: str | None = None
    direct: H3ClientProtocol | None = None
    direct_addr: NetworkAddress | None = None
    relayed: H3ClientProtocol | None = None
    relay_id: str | None = None
    since: float = field(default_factory=time.time)
    used: float = field(default_factory=time.monotonic)
    remote_nat: str | None = None
    attempts: int = 0
    successes: int = 0
    failures: int = 0
    """Punch attempts failed in a row (for the backoff)."""
    last: str | None = None
    punching: asyncio.Task[None] | None = None
    next_punch: float = 0.0
    relayed_at: float | None = None
    """When (monotonic) the relayed connection was made."""
    direct_after: float | None = None
    """Seconds from the relayed connection to the direct one, once upgraded."""
    candidates: tuple[str, ...] = ()
    """The peer's addresses as its record names them (a punch's first handshakes)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def path(self) -> str:
        if alive(self.direct):
            return "direct"
        return "relayed" if alive(self.relayed) else "connecting"

    def current(self) -> H3ClientProtocol | None:
        """The connection new requests go to: the direct one when it is alive."""
        if alive(self.direct):
            return self.direct
        return self.relayed if alive(self.relayed) else None


@dataclass
class _Dialing:
    """A punch attempt as its dialer holds it: where the peer's probes came from."""

    link: PeerLink
    seen: asyncio.Queue[NetworkAddress] = field(default_factory=asyncio.Queue)
    known: set[NetworkAddress] = field(default_factory=set)


class PathManager:
    """This node's links to its peers (see the module's docstring)."""

    def __init__(
        self,
        *,
        identity: Identity,
        endpoint: MeshEndpoint,
        locate: Locate,
        keepalive: float = 25.0,
        on_event: Callable[[str, dict[str, str]], None] | None = None,
    ) -> None:
        self.identity = identity
        self.endpoint = endpoint
        self.locate_record = locate
        self.keepalive = keepalive
        self.on_event = on_event or (lambda _name, _labels: None)
        self.links: dict[str, PeerLink] = {}
        self.relays: dict[str, RelayLink] = {}
        self._relay_tasks: dict[str, asyncio.Task[None]] = {}
        self.home: str | None = None
        self.nat = "unknown"
        self.local: list[str] = []
        self.reflexive: list[str] = []
        self.mapping: PortMapping | None = None
        """The port mapping the router granted (NAT-PMP), while one is held."""
        self._records: dict[str, tuple[float, NodeRecord]] = {}
        self._attempts: dict[bytes, Attempt] = {}
        self._dialing: dict[bytes, _Dialing] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        endpoint.probe_handler = self._on_probe

    # -- relays -------------------------------------------------------------------------------

    def relay_link(self, relay_id: str, addresses: Sequence[str]) -> RelayLink:
        """The attachment to ``relay_id`` (opened and kept when there is none)."""
        held = self.relays.get(relay_id)
        if held is not None:
            return held

        def arrived(peer: str, packet: bytes) -> None:
            self.endpoint.inject(packet, peer, relay_id)

        link = RelayLink(relay_id, list(addresses), self.identity, self.endpoint, on_packet=arrived)
        self.relays[relay_id] = link
        self._relay_tasks[relay_id] = asyncio.create_task(link.run())
        return link

    def set_home(self, relay_id: str, addresses: Sequence[str]) -> RelayLink:
        """Attach to ``relay_id`` as this node's home relay (published in its record)."""
        self.home = relay_id
        return self.relay_link(relay_id, addresses)

    def home_relay(self) -> tuple[str, tuple[str, ...]] | None:
        """The home relay's ID and addresses, once attached (what the node record says)."""
        link = self.relays.get(self.home) if self.home else None
        if link is None or not link.ready.is_set():
            return None
        return link.relay_id, tuple(link.addresses)

    # -- dialling -----------------------------------------------------------------------------

    async def locate(self, target: str) -> NodeRecord:
        """The live record of ``target`` (a node ID or a member's name), cached 30 s."""
        held = self._records.get(target)
        if held is not None and time.monotonic() - held[0] < RECORD_CACHE:
            return held[1]
        record = await self.locate_record(target)
        if record is None:
            raise PeerNotFound(f"{target}: no live record in the node directory")
        self._records[target] = self._records[record.node_id] = (time.monotonic(), record)
        return record

    async def link(self, target: str) -> PeerLink:
        """The link to ``target`` (a node ID or a member's name), dialled when it has no
        connection; ``PeerNotFound`` or ``TransportError`` when it cannot be reached."""
        record = await self.locate(target)
        if record.node_id == self.identity.node_id:
            raise HyperMeshError(f"{target} is this node")
        link = self.links.setdefault(record.node_id, PeerLink(record.node_id, record.name))
        link.used = time.monotonic()
        if link.current() is not None:
            return link
        async with link.lock:
            if link.current() is None:
                await self._connect(link, Target.of(record))
        return link

    async def connection(
        self, node_id: str, addresses: Sequence[str], *, name: str | None = None
    ) -> H3ClientProtocol:
        """A connection to a node whose addresses are known without the directory (the
        registry itself): direct, or through this node's home relay (where the registry is
        attached too); kept as a link like any peer's."""
        link = self.links.setdefault(node_id, PeerLink(node_id, name))
        link.used = time.monotonic()
        if link.current() is None:
            async with link.lock:
                if link.current() is None:
                    home = self.home_relay()
                    target = Target(
                        node_id,
                        name or node_id[:12],
                        tuple(addresses),
                        relay_id=home[0] if home else None,
                        relay_addresses=home[1] if home else (),
                    )
                    await self._connect(link, target)
        found = link.current()
        if found is None:
            raise TransportError(f"{name or node_id}: no path")
        return found

    def opener(
        self, node_id: str, address: str, name: str
    ) -> Callable[[], contextlib.AbstractAsyncContextManager[H3ClientProtocol]]:
        """A ``RegistryClient`` opener for the node at ``address``: the kept connection."""

        @contextlib.asynccontextmanager
        async def opened() -> AsyncIterator[H3ClientProtocol]:
            yield await self.connection(node_id, [address], name=name)

        return opened

    def forget(self, node_id: str) -> bool:
        """Close the link to ``node_id`` (the next dial starts afresh); whether there was one."""
        link = self.links.get(node_id)
        if link is None:
            return False
        self._close_link(link)
        return True

    async def _connect(self, link: PeerLink, record: Target) -> None:
        addresses = punch.candidates([*record.addresses, *record.reflexive])
        attempts: list[asyncio.Task[Won]] = [
            asyncio.create_task(self._direct(record.node_id, address, i * STAGGER))
            for i, address in enumerate(addresses)
        ]
        if record.relay_id is not None and record.relay_id != self.identity.node_id:
            delay = RELAY_DELAY if addresses else 0.0
            attempts.append(asyncio.create_task(self._relayed(record, delay)))
        if not attempts:
            raise TransportError(f"{record.name}: its record names no address and no relay")
        link.candidates = (*record.reflexive, *record.addresses)
        kind, protocol, where = await _first(attempts, record, DIAL_TIMEOUT)
        self._count("connection", {"path": kind})
        if kind == "direct":
            link.direct, link.direct_addr = protocol, where
        else:
            link.relayed, link.relay_id = protocol, record.relay_id
            link.relayed_at = time.monotonic()
        link.since = time.time()
        log.info(
            "peer connected",
            extra={"peer": record.name, "path": kind, "remote": describe(where)},
        )
        if kind == "relayed":
            self.punch_soon(link)

    async def _direct(
        self,
        node_id: str,
        address: NetworkAddress,
        delay: float,
        started: Callable[[H3ClientProtocol], None] | None = None,
    ) -> Won:
        await asyncio.sleep(delay)
        protocol = await self.endpoint.dial(
            address,
            expected_id=node_id,
            identity=self.identity,
            protocol=H3ClientProtocol,
            started=started,
        )
        return "direct", protocol, address

    async def _relayed(self, record: Target, delay: float) -> Won:
        await asyncio.sleep(delay)
        assert record.relay_id is not None
        relay = self.relay_link(record.relay_id, record.relay_addresses)
        try:
            async with asyncio.timeout(RELAY_READY):
                await relay.ready.wait()
        except TimeoutError:
            raise TransportError(f"relay {record.relay_id[:12]}…: not attached") from None
        via = virtual_address(record.node_id, record.relay_id)
        started: list[H3ClientProtocol] = []
        dial = asyncio.ensure_future(
            self.endpoint.dial(
                via,
                expected_id=record.node_id,
                identity=self.identity,
                protocol=H3ClientProtocol,
                started=started.append,
            )
        )
        watch = self._spawn(self._unstick(relay, dial, started))
        try:
            protocol = await dial
        finally:
            watch.cancel()
            if not dial.done():
                dial.cancel()
        return "relayed", protocol, via

    async def _unstick(
        self, relay: RelayLink, dial: asyncio.Future[Any], started: list[H3ClientProtocol]
    ) -> None:
        """A handshake through ``relay`` unanswered for ``RELAYED_CHECK`` seconds: ask the
        relay link whether it still carries packets both ways (this node's NAT may have dropped
        its mapping: the relay's packets are lost until the node sends again, and its QUIC
        backs off meanwhile). An unanswered PING attaches the link afresh; then the first
        flight goes again, byte for byte, rather than wait QUIC's backed-off retransmission."""
        await asyncio.sleep(RELAYED_CHECK)
        if dial.done() or not started:
            return
        if not await relay.check():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELAY_READY):
                    await relay.ready.wait()
        if not dial.done():
            self.endpoint.resend_first_flight(started[0])

    # -- requests -----------------------------------------------------------------------------

    async def request(
        self,
        target: str,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,  # noqa: ASYNC109 - bounds the whole, the message names it
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to ``target`` on its best path. A direct path that fails, or that
        stops answering (``_watched``), falls back to the relay; the request is tried once
        more there unless it was sent on a dead path and is not idempotent (it may have been
        carried out: ``TransportError`` says so)."""
        try:
            async with asyncio.timeout(timeout):
                for attempt in (1, 2):
                    link = await self.link(target)
                    protocol = link.current()
                    if protocol is None:
                        continue
                    try:
                        return await self._watched(link, protocol, method, path, headers, body)
                    except _PathDead:
                        self._lost(link, protocol)
                        if method not in IDEMPOTENT:
                            raise TransportError(
                                f"{target}: the direct path died during {method} {path}; "
                                "not sent again, it may have been carried out"
                            ) from None
                    except TransportError:
                        self._lost(link, protocol)
                        if attempt == 2:
                            raise
        except TimeoutError:
            raise TransportError(
                f"{target}: no answer to {method} {path} within {timeout:g}s"
            ) from None
        raise TransportError(f"{target}: no path")

    async def _watched(
        self,
        link: PeerLink,
        protocol: H3ClientProtocol,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        """The request on ``protocol``. On a direct path, while no answer has come for
        ``STALL`` seconds, a QUIC PING asks whether the path still carries anything; one
        unacknowledged for ``STALL_PING`` seconds means it does not (``_PathDead``) — long
        before the request's own timeout, and before the next keepalive would notice."""
        exchange = asyncio.ensure_future(protocol.request(method, path, headers=headers, body=body))
        try:
            while True:
                done, _ = await asyncio.wait({exchange}, timeout=STALL)
                if done:
                    return exchange.result()
                if protocol is not link.direct:
                    continue
                try:
                    async with asyncio.timeout(STALL_PING):
                        await protocol.ping()
                except (TimeoutError, ConnectionError, TransportError):
                    raise _PathDead from None
        finally:
            if not exchange.done():
                exchange.cancel()

    def _lost(self, link: PeerLink, protocol: H3ClientProtocol) -> None:
        """``protocol`` failed: drop it (a dead direct path falls back to the relay)."""
        protocol.close()
        if protocol is link.direct:
            link.direct = None
            link.last = "direct path lost"
            self._count("fallback", {})
            log.info("direct path lost: falling back", extra={"peer": link.name})
        elif protocol is link.relayed:
            link.relayed = None

    # -- punching: the dialer -----------------------------------------------------------------

    def punch_soon(self, link: PeerLink) -> None:
        """Start a punch attempt on a relayed link unless one runs or the backoff holds."""
        if link.punching is not None and not link.punching.done():
            return
        if not alive(link.relayed) or alive(link.direct) or time.monotonic() < link.next_punch:
            return
        link.punching = self._spawn(self._punch(link))

    async def _punch(self, link: PeerLink) -> None:
        token = punch.new_token()
        dialing = self._dialing[token] = _Dialing(link)
        link.attempts += 1
        labels = {"local_nat": self.nat, "remote_nat": link.remote_nat or "unknown"}
        try:
            async with asyncio.timeout(PUNCH_TIMEOUT):
                protocol, address = await self._race_direct(link, token, dialing, labels)
        except (TimeoutError, HyperMeshError, OSError, ValueError) as exc:
            link.failures += 1
            link.last = "failed"
            backoff = REPUNCH_BACKOFF[min(link.failures, len(REPUNCH_BACKOFF)) - 1]
            link.next_punch = time.monotonic() + backoff
            log.info(
                "hole punch failed",
                extra={"peer": link.name, "error": str(exc) or type(exc).__name__, **labels},
            )
            return
        finally:
            self._dialing.pop(token, None)
        link.successes += 1
        link.failures = 0
        link.last = "ok"
        self._count("punched", labels)
        self._upgrade(link, protocol, address)

    async def _ask_to_punch(self, link: PeerLink, token: bytes) -> list[tuple[str, int]]:
        relayed = link.relayed
        if relayed is None:
            raise TransportError("no relayed connection")
        body = {"token": token.hex(), "candidates": self.candidates(), "nat": self.nat}
        status, _, answer = await relayed.request(
            "POST",
            "/paths/v1/punch",
            headers=[("content-type", "application/json")],
            body=json.dumps(body).encode(),
        )
        if status != 200:
            raise TransportError(f"the peer refused to punch: {status} {answer[:200]!r}")
        data = json.loads(answer)
        if not isinstance(data, dict) or not isinstance(data.get("candidates"), list):
            raise TransportError("the peer's punch answer has no candidates")
        nat = data.get("nat")
        link.remote_nat = nat if nat in punch.NAT_KINDS else "unknown"
        return punch.candidates(str(c) for c in data["candidates"])

    async def _race_direct(
        self, link: PeerLink, token: bytes, dialing: _Dialing, labels: dict[str, str]
    ) -> tuple[H3ClientProtocol, NetworkAddress]:
        """Race handshakes to the peer's candidates: those its record names at once, with
        the punch request; those its answer names; every address its probes come from. The
        answer and each probe mean the way may now be open: the handshakes to those
        addresses send their first flight again. The first to complete wins."""
        known = punch.candidates(link.candidates)
        self._spawn(self._send_probes(token, known, punch.PROBE))
        race = _Race(self, link.node_id)
        for address in known:
            race.start_or_resend(address)
        asked = asyncio.ensure_future(self._ask_to_punch(link, token))

        def answered(theirs: list[tuple[str, int]]) -> None:
            labels["remote_nat"] = link.remote_nat or "unknown"
            self._count("punch", labels)
            self._spawn(self._send_probes(token, theirs, punch.PROBE))
            for address in dict.fromkeys([*race.attempts, *theirs]):
                race.start_or_resend(address)

        try:
            return await race.run(asked, dialing.seen, answered)
        except BaseException:
            asked.cancel()
            _close_losers(race.attempts.values(), None)
            raise

    def _upgrade(self, link: PeerLink, protocol: H3ClientProtocol, address: NetworkAddress) -> None:
        """Make ``protocol`` the link's path; the relayed connection drains, then closes."""
        old = link.relayed
        link.direct, link.direct_addr = protocol, address
        link.since = time.time()
        if link.relayed_at is not None:
            link.direct_after = time.monotonic() - link.relayed_at
        self._count("connection", {"path": "direct"})
        log.info(
            "upgraded to a direct path", extra={"peer": link.name, "remote": describe(address)}
        )
        if old is not None:
            self._spawn(_drain(old))

    # -- punching: the peer asked -------------------------------------------------------------

    def punch_requested(self, peer_id: str, body: Any) -> dict[str, Any]:
        """``POST /paths/v1/punch`` from ``peer_id``: remember the token, probe its candidates,
        answer this node's. ``ValueError`` naming the field for a malformed body."""
        token, theirs = _punch_body(body)
        now = time.monotonic()
        for old in [t for t, a in self._attempts.items() if a.expires < now]:
            del self._attempts[old]
        if len(self._attempts) >= 256:
            raise ValueError("too many punch attempts in progress: try again later")
        self._attempts[token] = Attempt(peer_id, now + punch.TOKEN_LIFETIME)
        self._spawn(self._send_probes(token, theirs, punch.PROBE))
        return {"candidates": self.candidates(), "nat": self.nat}

    def _on_probe(self, data: bytes, address: NetworkAddress) -> None:
        parsed = punch.read_probe(data)
        if parsed is None:
            return
        kind, token = parsed
        dialing = self._dialing.get(token)
        if dialing is not None:
            if address not in dialing.known:
                dialing.known.add(address)
                dialing.seen.put_nowait(address)
        else:
            attempt = self._attempts.get(token)
            if attempt is None or attempt.expires < time.monotonic():
                return
            if attempt.answers >= punch.MAX_ANSWERS:
                return
            attempt.answers += 1
            attempt.seen.add(address)
        if kind == punch.PROBE:
            self.endpoint.send_datagram(punch.probe(punch.ANSWER, token), address)

    async def _send_probes(
        self, token: bytes, addresses: Sequence[NetworkAddress], kind: bytes
    ) -> None:
        started = asyncio.get_running_loop().time()
        for at in punch.PROBE_SCHEDULE:
            await asyncio.sleep(max(0.0, started + at - asyncio.get_running_loop().time()))
            if token not in self._attempts and token not in self._dialing:
                return  # the attempt ended
            for address in addresses:
                self.endpoint.send_datagram(punch.probe(kind, token), address)

    # -- what the node knows of itself --------------------------------------------------------

    def candidates(self) -> list[str]:
        """Where peers may reach this node directly: its reflexive, then its local addresses."""
        return list(dict.fromkeys([*self.reflexive, *self.local]))[: punch.MAX_CANDIDATES]

    def observed(
        self,
        local: Sequence[str],
        seen: Sequence[str],
        udp: bool,
        mapping: PortMapping | None = None,
    ) -> bool:
        """Record the node's addresses and where UDP observers saw it (and the port mapping
        its router granted, whose address comes first: it admits anyone); True when that
        changed what the node knows (its record must be published again, punching redone)."""
        nat = punch.classify(local, seen, udp)
        mapped = [mapping.address] if mapping is not None else []
        reflexive = [a for a in dict.fromkeys([*mapped, *seen]) if a not in set(local)]
        changed = (nat, reflexive, list(local)) != (self.nat, self.reflexive, self.local)
        self.nat, self.reflexive, self.local = nat, reflexive, list(local)
        self.mapping = mapping
        if changed:
            log.info(
                "own addresses observed",
                extra={"nat": nat, "reflexive": reflexive, "local": list(local)},
            )
            for link in self.links.values():
                link.next_punch = 0.0
                self.punch_soon(link)
        return changed

    # -- upkeep -------------------------------------------------------------------------------

    async def upkeep(self) -> None:
        """Forever: keep direct paths alive (or fall back), punch relayed links again when
        their backoff ends, close links idle for ``IDLE_LINK``."""
        while True:
            await asyncio.sleep(self.keepalive)
            for link in list(self.links.values()):
                await self._tend(link)

    async def _tend(self, link: PeerLink) -> None:
        if time.monotonic() - link.used > IDLE_LINK:
            self._close_link(link)
            return
        direct = link.direct
        if direct is not None and alive(direct):
            try:
                async with asyncio.timeout(PING_TIMEOUT):
                    await direct.ping()
            except (TimeoutError, ConnectionError, TransportError):
                self._lost(link, direct)
        elif direct is not None:
            self._lost(link, direct)
        if link.current() is None:
            self._spawn(self._redial(link))
        else:
            self.punch_soon(link)

    async def _redial(self, link: PeerLink) -> None:
        with contextlib.suppress(HyperMeshError, OSError):
            await self.link(link.node_id)

    def _close_link(self, link: PeerLink) -> None:
        for protocol in (link.direct, link.relayed):
            if protocol is not None:
                protocol.close()
        self.links.pop(link.node_id, None)

    async def aclose(self) -> None:
        for link in list(self.links.values()):
            self._close_link(link)
        for task in [*self._tasks, *self._relay_tasks.values()]:
            task.cancel()
        for relay in self.relays.values():
            with contextlib.suppress(Exception):
                await relay.aclose()

    # -- views --------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """``GET /paths/v1``."""
        home = self.relays.get(self.home) if self.home else None
        mapping = self.mapping
        return {
            "node": self.identity.node_id,
            "nat": self.nat,
            "local": self.local,
            "reflexive": self.reflexive,
            "mapping": None
            if mapping is None
            else {
                "protocol": mapping.protocol,
                "address": mapping.address,
                "gateway": mapping.gateway,
                "lifetime": mapping.lifetime,
            },
            "relay": None if home is None else _relay_view(home),
            "peers": [_link_view(link, self.endpoint) for link in self.links.values()],
        }

    # -- small things -------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _count(self, event: str, labels: dict[str, str]) -> None:
        self.on_event(event, labels)


async def _first(
    attempts: list[asyncio.Task[Won]],
    record: Target,
    timeout: float,  # noqa: ASYNC109 - bounds the race
) -> Won:
    """The first attempt to succeed; the others cancelled, and closed if they connect."""
    errors: list[str] = []
    winner: asyncio.Future[Won] | None = None
    try:
        async with asyncio.timeout(timeout):
            for next_done in asyncio.as_completed(attempts):
                try:
                    won = await next_done
                except (HyperMeshError, OSError, ValueError) as exc:
                    errors.append(str(exc))
                    continue
                winner = next((t for t in attempts if t.done() and _result(t) is won), None)
                return won
    except TimeoutError:
        errors.append(f"no handshake within {timeout:g}s")
    finally:
        _close_losers(attempts, winner)
    raise TransportError(f"{record.name} ({record.node_id[:12]}…) unreachable: {'; '.join(errors)}")


def _result(task: asyncio.Future[Won]) -> Won | None:
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _close_losers(attempts: Iterable[asyncio.Future[Won]], winner: object) -> None:
    """Cancel every attempt but ``winner``; close the connection of any that connects."""

    def close(task: asyncio.Future[Won]) -> None:
        won = _result(task)
        if won is not None:
            won[1].close()

    for task in attempts:
        if task is winner:
            continue
        task.cancel()
        task.add_done_callback(close)


class _Race:
    """The direct handshakes of one punch attempt, by address."""

    def __init__(self, paths: PathManager, node_id: str) -> None:
        self.paths, self.node_id = paths, node_id
        self.attempts: dict[NetworkAddress, asyncio.Task[Won]] = {}
        self.clients: dict[NetworkAddress, H3ClientProtocol] = {}

    def start_or_resend(self, address: NetworkAddress) -> None:
        """A handshake to ``address``; if one runs, its first flight sent again."""
        if address in self.attempts:
            client = self.clients.get(address)
            if client is not None:
                self.paths.endpoint.resend_first_flight(client)
            return

        def started(client: H3ClientProtocol) -> None:
            self.clients[address] = client

        self.attempts[address] = asyncio.create_task(
            self.paths._direct(self.node_id, address, 0.0, started)
        )

    async def run(
        self,
        asked: asyncio.Future[list[tuple[str, int]]],
        seen: asyncio.Queue[NetworkAddress],
        answered: Callable[[list[tuple[str, int]]], None],
    ) -> tuple[H3ClientProtocol, NetworkAddress]:
        """Wait for the first handshake to complete, acting on the punch answer (``asked``:
        its failure is the attempt's) and on every probe that arrives meanwhile (until the
        caller's timeout)."""
        pending_answer = True
        while True:
            arrival = asyncio.ensure_future(seen.get())
            waiting: set[asyncio.Future[Any]] = {arrival}
            waiting.update(a for a in self.attempts.values() if not a.done())
            if pending_answer:
                waiting.add(asked)
            try:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not arrival.done():
                    arrival.cancel()
            if arrival in done and not arrival.cancelled():
                self.start_or_resend(arrival.result())
            if pending_answer and asked in done:
                pending_answer = False
                answered(asked.result())
            for task in self.attempts.values():
                won = _result(task) if task.done() else None
                if won is not None:
                    _close_losers(self.attempts.values(), task)
                    return won[1], won[2]


async def _drain(protocol: H3ClientProtocol) -> None:
    """Close ``protocol`` once no request on it waits for an answer (at most 30 s)."""
    waiting = [exchange.future for exchange in protocol._exchanges.values()]
    if waiting:
        await asyncio.wait(waiting, timeout=DRAIN_TIMEOUT)
    protocol.close()


def _punch_body(body: Any) -> tuple[bytes, list[tuple[str, int]]]:
    if not isinstance(body, dict):
        raise ValueError("the body is a JSON object of token, candidates and nat")
    token = body.get("token")
    if not isinstance(token, str) or len(token) != 2 * punch.TOKEN_BYTES:
        raise ValueError(f"token: {2 * punch.TOKEN_BYTES} hexadecimal digits")
    try:
        raw = bytes.fromhex(token)
    except ValueError:
        raise ValueError(f"token: {2 * punch.TOKEN_BYTES} hexadecimal digits") from None
    found = body.get("candidates")
    if not isinstance(found, list) or len(found) > punch.MAX_CANDIDATES:
        raise ValueError(f"candidates: a list of at most {punch.MAX_CANDIDATES} host:port")
    if not all(isinstance(c, str) and len(c) <= 64 for c in found):
        raise ValueError("candidates: host:port strings")
    nat = body.get("nat", "unknown")
    if nat not in punch.NAT_KINDS:
        raise ValueError(f"nat: one of {', '.join(punch.NAT_KINDS)}")
    return raw, punch.candidates(found)


def _relay_view(link: RelayLink) -> dict[str, Any]:
    return {
        "node": link.relay_id,
        "transport": link.transport,
        "address": link.address,
        "observed": link.observed,
        "rtt_ms": None if link.rtt is None else round(link.rtt * 1000, 3),
    }


def _link_view(link: PeerLink, endpoint: MeshEndpoint) -> dict[str, Any]:
    protocol = link.current()
    rtt = None
    remote = None
    if protocol is not None:
        smoothed = getattr(protocol.quic._loss, "_rtt_smoothed", 0.0)
        rtt = round(smoothed * 1000, 3) if smoothed else None
        remote = describe(link.direct_addr) if protocol is link.direct else None
    return {
        "node": link.node_id,
        "name": link.name,
        "path": link.path,
        "local": endpoint.local_address,
        "remote": remote or (f"relay {link.relay_id}" if link.relay_id else None),
        "relay": link.relay_id if link.path == "relayed" else None,
        "rtt_ms": rtt,
        "since": rfc3339(
            datetime.datetime.fromtimestamp(link.since, datetime.UTC), milliseconds=True
        ),
        "punch": {"attempts": link.attempts, "successes": link.successes, "last": link.last},
        "direct_after_ms": (
            None if link.direct_after is None else round(link.direct_after * 1000, 3)
        ),
    }
