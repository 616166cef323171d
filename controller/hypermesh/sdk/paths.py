"""What a node says of its paths to its peers (``GET /paths/v1``), as typed values.

A node reaches each peer directly (a QUIC connection between the two nodes' own UDP ports, hole
punched when both sit behind NAT) or through a relay (the packets of the same end-to-end QUIC
connection forwarded by a relay node). ``PathsView.parse`` checks every field of the node's
answer — its type, its length, its values — and raises ``BadPaths`` naming the first field that
is wrong, so that nothing a node sends reaches a table or a program unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypermesh.errors import HyperMeshError
from hypermesh.timefmt import parse_rfc3339, rfc3339
from hypermesh.transport.identity import is_node_id

__all__ = ["BadPaths", "HomeRelay", "NodePing", "PathsView", "PeerPath", "PunchStats"]

MAX_PEERS = 10_000
"""A node's answer lists at most this many peers."""
MAX_ADDRESSES = 64
"""… and at most this many local or reflexive addresses."""
MAX_TEXT = 256
"""An address or a name is at most this many characters."""
MAX_COUNT = 2**53
"""A counter above this is not a count a node kept."""

_TOKEN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
"""A kind (``direct``, ``endpoint-dependent``, ``tcp``…): lower case, short."""


class BadPaths(HyperMeshError):
    """A node's answer about its paths is not what the API promises (the field is named)."""


def _field(data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        raise BadPaths(f"{name}: not a JSON object")
    return data.get(name)


def _text(value: Any, where: str, *, optional: bool = False) -> str | None:
    """A short printable string (an address, a name)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise BadPaths(f"{where}: not a string of 1 to {MAX_TEXT} characters")
    if not value.isprintable():
        raise BadPaths(f"{where}: holds characters that are not printable")
    return value


def _kind(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise BadPaths(f"{where}: not a kind (a-z, 0-9, '-', at most 32): {str(value)[:40]!r}")
    return value


def _optional_kind(value: Any, where: str) -> str | None:
    return None if value is None else _kind(value, where)


def _node_id(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not is_node_id(value):
        raise BadPaths(f"{where}: not a node ID (hm1 and 52 base32 characters)")
    return value


def _rtt(value: Any, where: str) -> float | None:
    """A round trip in milliseconds, or None when not measured yet."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadPaths(f"{where}: not a number of milliseconds")
    if not 0 <= value < 3_600_000:
        raise BadPaths(f"{where}: {value} ms is not a round trip")
    return float(value)


def _measured(value: Any, where: str) -> float:
    """A round trip that was measured (never None)."""
    rtt = _rtt(value, where)
    if rtt is None:
        raise BadPaths(f"{where}: not a number of milliseconds")
    return rtt


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise BadPaths(f"{where}: not a count")
    return value


def _addresses(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        raise BadPaths(f"{where}: not a list of at most {MAX_ADDRESSES} addresses")
    return tuple(str(_text(a, f"{where}[{i}]")) for i, a in enumerate(value))


@dataclass(frozen=True, slots=True)
class PunchStats:
    """The hole punches a node tried towards one peer."""

    attempts: int = 0
    successes: int = 0
    last: str | None = None
    """``ok``, ``failed``, or None before the first."""

    @classmethod
    def parse(cls, data: Any, where: str) -> PunchStats:
        if data is None:
            return cls()
        return cls(
            _count(_field(data, "attempts") or 0, f"{where}.attempts"),
            _count(_field(data, "successes") or 0, f"{where}.successes"),
            _optional_kind(_field(data, "last"), f"{where}.last"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "successes": self.successes, "last": self.last}


@dataclass(frozen=True, slots=True)
class PeerPath:
    """How a node reaches one peer now."""

    node_id: str
    name: str | None
    path: str
    """``direct``, ``relayed`` or ``connecting``."""
    local: str | None
    """The address the node sends from (its own socket's, or its relay's for a relayed path)."""
    remote: str | None
    """The peer's address the packets go to (direct), or the relay's (relayed)."""
    relay: str | None
    """The relay's node ID on a relayed path."""
    rtt_ms: float | None
    since: datetime | None
    """Since when the peer has been on this path."""
    punch: PunchStats

    @classmethod
    def parse(cls, data: Any, where: str) -> PeerPath:
        since_text = _field(data, "since")
        since = parse_rfc3339(since_text) if since_text is not None else None
        if since_text is not None and since is None:
            raise BadPaths(f"{where}.since: not an RFC 3339 time")
        return cls(
            node_id=str(_node_id(_field(data, "node"), f"{where}.node")),
            name=_text(_field(data, "name"), f"{where}.name", optional=True),
            path=_kind(_field(data, "path"), f"{where}.path"),
            local=_text(_field(data, "local"), f"{where}.local", optional=True),
            remote=_text(_field(data, "remote"), f"{where}.remote", optional=True),
            relay=_node_id(_field(data, "relay"), f"{where}.relay", optional=True),
            rtt_ms=_rtt(_field(data, "rtt_ms"), f"{where}.rtt_ms"),
            since=since,
            punch=PunchStats.parse(_field(data, "punch"), f"{where}.punch"),
        )

    def to_json(self) -> dict[str, Any]:
        """As the node's API spells it."""
        return {
            "node": self.node_id,
            "name": self.name,
            "path": self.path,
            "local": self.local,
            "remote": self.remote,
            "relay": self.relay,
            "rtt_ms": self.rtt_ms,
            "since": rfc3339(self.since) if self.since else None,
            "punch": self.punch.to_json(),
        }


@dataclass(frozen=True, slots=True)
class HomeRelay:
    """The relay a node keeps a connection to, and is reachable through."""

    node_id: str
    transport: str | None
    """``udp`` (QUIC) or ``tcp`` (TLS over TCP, where UDP is blocked); None while the node
    is (re)connecting to it."""
    address: str | None
    observed: str | None
    """The node's address as the relay sees it (a reflexive address)."""
    rtt_ms: float | None

    @classmethod
    def parse(cls, data: Any, where: str) -> HomeRelay | None:
        if data is None:
            return None
        return cls(
            str(_node_id(_field(data, "node"), f"{where}.node")),
            _optional_kind(_field(data, "transport"), f"{where}.transport"),
            _text(_field(data, "address"), f"{where}.address", optional=True),
            _text(_field(data, "observed"), f"{where}.observed", optional=True),
            _rtt(_field(data, "rtt_ms"), f"{where}.rtt_ms"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "transport": self.transport,
            "address": self.address,
            "observed": self.observed,
            "rtt_ms": self.rtt_ms,
        }


@dataclass(frozen=True, slots=True)
class PathsView:
    """One node's view of its paths: how it is reached (its NAT, addresses and home relay)
    and, per peer, how it reaches that peer now."""

    node_id: str
    nat: str
    """``public``, ``endpoint-independent``, ``endpoint-dependent``, ``udp-blocked`` or
    ``unknown``: what the node learnt of the NAT in front of it."""
    local: tuple[str, ...]
    reflexive: tuple[str, ...]
    """Its addresses as others see them (through its NAT)."""
    relay: HomeRelay | None
    peers: tuple[PeerPath, ...]

    @classmethod
    def parse(cls, data: Any) -> PathsView:
        """The node's ``GET /paths/v1`` answer, checked field by field (``BadPaths``)."""
        peers = _field(data, "peers")
        if peers is None:
            peers = []
        if not isinstance(peers, list) or len(peers) > MAX_PEERS:
            raise BadPaths(f"peers: not a list of at most {MAX_PEERS}")
        return cls(
            node_id=str(_node_id(_field(data, "node"), "node")),
            nat=_kind(_field(data, "nat") or "unknown", "nat"),
            local=_addresses(_field(data, "local"), "local"),
            reflexive=_addresses(_field(data, "reflexive"), "reflexive"),
            relay=HomeRelay.parse(_field(data, "relay"), "relay"),
            peers=tuple(PeerPath.parse(p, f"peers[{i}]") for i, p in enumerate(peers)),
        )

    def peer(self, node_id: str) -> PeerPath | None:
        """The path to ``node_id``, if the node has one."""
        return next((p for p in self.peers if p.node_id == node_id), None)

    def to_json(self) -> dict[str, Any]:
        """As the node's API spells it (``hmctl get paths -o json``)."""
        return {
            "node": self.node_id,
            "nat": self.nat,
            "local": list(self.local),
            "reflexive": list(self.reflexive),
            "relay": self.relay.to_json() if self.relay else None,
            "peers": [p.to_json() for p in self.peers],
        }


@dataclass(frozen=True, slots=True)
class NodePing:
    """What a node answered to ``POST /paths/v1/ping``: the path it took to the peer."""

    node_id: str
    name: str | None
    path: str
    remote: str | None
    relay: str | None
    rtt_ms: tuple[float, ...]
    upgraded: bool
    """The path moved from the relay to a direct one while pinging."""

    @classmethod
    def parse(cls, data: Any, count: int) -> NodePing:
        """The answer, checked (``BadPaths``); at most ``count`` round trips."""
        rtts = _field(data, "rtt_ms")
        if not isinstance(rtts, list) or not 1 <= len(rtts) <= count:
            raise BadPaths(f"rtt_ms: not a list of 1 to {count} round trips")
        upgraded = _field(data, "upgraded")
        if not isinstance(upgraded, bool | None):
            raise BadPaths("upgraded: not true or false")
        return cls(
            node_id=str(_node_id(_field(data, "node"), "node")),
            name=_text(_field(data, "name"), "name", optional=True),
            path=_kind(_field(data, "path"), "path"),
            remote=_text(_field(data, "remote"), "remote", optional=True),
            relay=_node_id(_field(data, "relay"), "relay", optional=True),
            rtt_ms=tuple(_measured(r, f"rtt_ms[{i}]") for i, r in enumerate(rtts)),
            upgraded=bool(upgraded),
        )
