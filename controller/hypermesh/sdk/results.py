"""What the SDK hands back: the nodes it knows (``MeshNode``), DNS results (``DnsResult``),
nodes' HTTP/3 answers (``NodeResponse``), a chain checked end to end (``VerifiedChain``), and
its refusals (``Refused``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import dns.message

from hypermesh.chain.block import Block
from hypermesh.errors import HyperMeshError
from hypermesh.transport.address import PeerRef

__all__ = ["DnsResult", "MeshNode", "NodeResponse", "PingResult", "Refused", "VerifiedChain"]


class Refused(HyperMeshError):
    """The other end answered, and said no (the status and its reason are in the message)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason or message
        """The other end's refusal alone (``403 forbidden: …``), without who said it."""


@dataclass(frozen=True, slots=True)
class MeshNode(PeerRef):
    """A node of a Mesh's directory: a ``PeerRef`` (where it answers, the node ID it must
    prove) with the name the directory knows it by and its ephemeral interface (tunnels).
    Anywhere the SDK takes a node, a plain ``PeerRef`` does too, except tunnels, which need
    the ephemeral interface."""

    name: str = ""
    """What the directory calls it (empty when unknown)."""
    ephemeral: str | None = None
    """Its ephemeral interface's ``host:port``, when it has one."""

    def __str__(self) -> str:
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class DnsResult:
    """A DNS answer: its rcode, the records (as text) of the type asked, and the check."""

    name: str
    type: str
    rcode: str
    records: tuple[str, ...]
    verified: bool
    """True when checked from the registry's key down."""
    response: dns.message.Message = field(repr=False, compare=False)
    size: int = 0
    """The first answer's size on the wire, in bytes."""
    zone: str | None = None
    """With verification: the zone the answer was checked in."""
    failure: str | None = None
    """With ``Mesh.query(verify=True)``: why the answer does not check out (``resolve``
    raises ``Unverified`` instead)."""


@dataclass(frozen=True, slots=True)
class NodeResponse:
    """An HTTP/3 answer from a node."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (``ValueError`` when it is not)."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class VerifiedChain:
    """A whole chain fetched and checked: every block, link, payload and the tree head it
    makes, which is the head its node shows."""

    author: str
    """The chain's author (node ID)."""
    size: int
    root: bytes
    """The Merkle tree head of the ``size`` blocks."""
    payloads_checked: int
    blocks: list[tuple[Block, bytes | None]] = field(repr=False, compare=False)
    """Every block with its payload (None: redacted)."""


@dataclass(frozen=True, slots=True)
class PingResult:
    """What ``Mesh.ping`` measured of a node: where it answered as its key, and how fast."""

    node_id: str
    address: str
    """The address whose handshake won (``host:port``)."""
    path: str
    """How it was reached: ``direct`` (a QUIC connection to the node itself) or ``relayed``
    (the same end-to-end connection, its packets forwarded by ``relay``)."""
    rtt_ms: tuple[float, ...]
    """The round trip of each request on that connection, in milliseconds."""
    name: str = ""
    """The node's name, as its record or the directory gives it (empty when unknown)."""
    handshake_ms: float = 0.0
    """How long the winning connection took to open (happy eyeballs included)."""
    relay: str | None = None
    """On a relayed path, the relay's node ID."""
    relay_transport: str | None = None
    """How the pinging node reaches that relay, when it is its home relay: ``udp`` or ``tcp``."""
    local: str | None = None
    """The address the pinging node sent from, when it says."""
    upgraded: bool = False
    """The path moved from the relay to a direct one during the ping."""
    via: str | None = None
    """The node ID of the node that pinged (``Mesh.ping`` through the own node); None: this
    process pinged, directly."""

    @property
    def rtt_min(self) -> float:
        return min(self.rtt_ms)

    @property
    def rtt_avg(self) -> float:
        return sum(self.rtt_ms) / len(self.rtt_ms)

    @property
    def rtt_max(self) -> float:
        return max(self.rtt_ms)

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON (``hmctl ping -o json``)."""
        return {
            "node": self.node_id,
            "name": self.name,
            "address": self.address,
            "path": self.path,
            "rttMs": list(self.rtt_ms),
            "handshakeMs": self.handshake_ms,
            "relay": self.relay,
            "relayTransport": self.relay_transport,
            "local": self.local,
            "upgraded": self.upgraded,
            "via": self.via,
        }
