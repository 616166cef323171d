"""Hole punching's small parts: the NAT kinds a node can tell about itself, probes and the
tokens that tie them to one attempt.

A **probe** is a tiny UDP datagram sent from the node's one socket (``MeshEndpoint``) to a
peer's candidate addresses: ``PROBE_MAGIC`` + a kind byte (``P`` probe, ``A`` answer) + the
attempt's 16-byte token. Sending one opens the sender's NAT for the peer (a mapping, and a
filter entry that lets the peer's packets in); receiving one tells where the peer's packets
really come from (a *peer-reflexive* address, the only one that works when the peer's NAT maps
each destination to a new port). A probe carries nothing else and is only ever sent to
addresses a peer gave over an authenticated connection, a bounded number of times.

**NAT kinds** (RFC 4787's terms), as a node can tell them from where its packets were seen:
``public`` (seen from one of its own addresses), ``endpoint-independent`` (two observers saw
the same outside address and port), ``endpoint-dependent`` (they saw different ports: a
"symmetric" NAT), ``udp-blocked`` (no UDP observer answered), ``unknown`` (one observer).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hypermesh.transport.address import parse_address
from hypermesh.transport.endpoint import PROBE_MAGIC

NAT_KINDS = ("public", "endpoint-independent", "endpoint-dependent", "udp-blocked", "unknown")
TOKEN_BYTES = 16
PROBE = b"P"
ANSWER = b"A"
PROBE_SCHEDULE = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5)
"""Seconds after the start of an attempt at which probes go to every candidate (8 rounds: a
lost probe is made up for, and a NAT that opens late is still met)."""
MAX_CANDIDATES = 16
TOKEN_LIFETIME = 10.0
"""Seconds a punch attempt's token is honoured."""
MAX_ANSWERS = 32
"""Answers sent for one token at most (a probe is answered at most this many times)."""


def new_token() -> bytes:
    return secrets.token_bytes(TOKEN_BYTES)


def probe(kind: bytes, token: bytes) -> bytes:
    """The datagram of a probe (``PROBE``) or an answer (``ANSWER``) for ``token``."""
    return PROBE_MAGIC + kind + token


def read_probe(data: bytes) -> tuple[bytes, bytes] | None:
    """``(kind, token)`` of a probe datagram; None when it is not one."""
    body = data[len(PROBE_MAGIC) :]
    if not data.startswith(PROBE_MAGIC) or len(body) != 1 + TOKEN_BYTES:
        return None
    kind = body[:1]
    if kind not in (PROBE, ANSWER):
        return None
    return kind, body[1:]


def classify(local: Iterable[str], observed: Sequence[str], udp_answered: bool) -> str:
    """The NAT kind from the node's own addresses and where UDP observers saw it."""
    if not udp_answered:
        return "udp-blocked"
    mine = set(local)
    if any(address in mine for address in observed):
        return "public"
    distinct = set(observed)
    if len(observed) < 2:
        return "unknown"
    return "endpoint-independent" if len(distinct) == 1 else "endpoint-dependent"


def candidates(addresses: Iterable[str]) -> list[tuple[str, int]]:
    """Socket addresses to try, from ``host:port`` texts: duplicates, unparseable ones and
    unusable hosts (unspecified, multicast) dropped, at most ``MAX_CANDIDATES``."""
    out: list[tuple[str, int]] = []
    for text in addresses:
        try:
            host, port = parse_address(text)
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_multicast or not 0 < port < 65536:
            continue
        pair = (str(ip), port)
        if pair not in out:
            out.append(pair)
        if len(out) == MAX_CANDIDATES:
            break
    return out


@dataclass
class Attempt:
    """One punch attempt's token, as the side that received it (the target) holds it."""

    peer_id: str
    expires: float
    answers: int = 0
    seen: set[tuple[str, int]] = field(default_factory=set)
    """Where the peer's probes came from."""
