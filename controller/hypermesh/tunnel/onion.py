"""The ephemeral interface's wire format: onion layers over HTTP/3 requests.

A tunnel runs from an anonymous client through relays to a destination (the last hop). The
client picks every hop, and for each one a fresh circuit ID (16 random bytes) and a fresh
ChaCha20-Poly1305 key (32 random bytes); nothing of the client's own identity is used.

**Opening.** The client nests one sealed layer per hop, innermost for the destination::

    open_i = HPKE-seal(hop_i's tunnel key, info = "hypermesh-tunnel-v1 open to " || node ID_i,
                       JSON {"v": 1, "c": circuit_i, "k": key_i, "exp": expiry,
                             "next": {"a": address, "i": node ID, "c": circuit_i+1} | null,
                             "inner": open_i+1})

HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) takes a fresh
ephemeral X25519 key for every layer, so each hop's layer is readable by that hop alone. A hop
learns its circuit, its key, the expiry and (for a relay) the next hop — nothing else.

**Data.** A message to the destination is a request (``encode_request``) padded to a size
bucket (``pad``), then sealed once per hop from the inside out::

    layer_i = nonce (12) || ChaCha20-Poly1305(key_i, nonce, kind (1) || layer_i+1,
                                              aad = "hypermesh-tunnel-v1 forward" || circuit_i)

and sent as ``circuit_1 || layer_1``. Each relay opens its layer (a wrong key or any change
fails the AEAD and the message is dropped) and sends ``circuit_i+1 || layer_i+1`` on. The answer
comes back the same way, each hop adding a layer with its key and the ``backward`` label; the
client removes them all. ``kind`` is ``DATA`` or ``CLOSE`` (tear the circuit down).

That is data version 1: a relay holds a whole message before it can open it. Version 2
(``tunnel.records``) carries the same padded request in records of 16 KiB, each sealed per hop,
which a relay passes on as they arrive; circuits are opened the same way for both.

The tunnel keys of the nodes are X25519 keys made at each process start and never written to
disk; a node publishes the public half as a card signed by its node key (``key_card``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hypermesh.errors import HyperMeshError
from hypermesh.inputs import BadInput, loads
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity, is_node_id
from hypermesh.transport.keycards import make_card, read_card

VERSION = 1
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
OPEN_INFO = b"hypermesh-tunnel-v1 open to "
CARD_CONTEXT = b"hypermesh-tunnel-key-v1\0"
FORWARD = b"hypermesh-tunnel-v1 forward"
BACKWARD = b"hypermesh-tunnel-v1 backward"
CIRCUIT_SIZE = 16
NONCE_SIZE = 12
LAYER_OVERHEAD = NONCE_SIZE + 16 + 1
"""Bytes each hop's layer adds: the nonce, the AEAD tag and the kind."""
DATA = 0
CLOSE = 1
OPENED = b"hypermesh-tunnel-v1 opened"
"""What the destination answers an open with, sealed back through every hop."""
MIN_BUCKET = 512
MAX_BUCKET_STEP = 64 * 1024
MAX_HOPS = 8


class BadTunnel(HyperMeshError):
    """A tunnel message that cannot be opened or is malformed (the text says which)."""


@dataclass(frozen=True, slots=True)
class Hop:
    """A node a tunnel passes through (or ends at): where it is, who it is, its tunnel key."""

    peer: PeerRef
    """Its ephemeral interface's ``host:port``, and its node ID, pinned in the QUIC handshake."""
    key: X25519PublicKey
    """Its tunnel key, from its signed card."""


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where a relay sends a circuit's messages on: the next node, and the circuit ID it
    knows the circuit by."""

    peer: PeerRef
    circuit: bytes


@dataclass(frozen=True, slots=True)
class Layer:
    """What a hop learns by opening its layer of an open message."""

    circuit: bytes
    key: bytes
    expires: float
    next: NextHop | None
    """None at the destination."""
    inner: bytes
    """The open message for the next hop (empty at the destination)."""


def new_tunnel_key() -> X25519PrivateKey:
    """A node's tunnel key for this process's lifetime (kept in memory only)."""
    return X25519PrivateKey.generate()


def key_card(identity: Identity, key: X25519PrivateKey) -> dict[str, str]:
    """The node's tunnel key, signed by its node key."""
    return make_card(identity, key, CARD_CONTEXT)


def check_card(card: Any, node_id: str) -> X25519PublicKey:
    """The tunnel key in ``card`` once checked to be signed by ``node_id``."""
    key = read_card(card, node_id, CARD_CONTEXT)
    if key is None:
        raise BadTunnel(f"not a tunnel key card, or not signed by {node_id}")
    return key


def build_open(
    hops: Sequence[Hop], expires: float
) -> tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]:
    """The open message for ``hops`` (relays first, the destination last): ``(message for the
    first hop, circuit IDs, keys)``, circuits and keys fresh and one per hop."""
    if not 1 <= len(hops) <= MAX_HOPS:
        raise BadTunnel(f"a tunnel has 1 to {MAX_HOPS} hops")
    circuits = tuple(os.urandom(CIRCUIT_SIZE) for _ in hops)
    keys = tuple(ChaCha20Poly1305.generate_key() for _ in hops)
    inner = b""
    for i in reversed(range(len(hops))):
        following = hops[i + 1] if i + 1 < len(hops) else None
        layer = {
            "v": VERSION,
            "c": circuits[i].hex(),
            "k": base64.b64encode(keys[i]).decode(),
            "exp": expires,
            "next": None
            if following is None
            else {
                "a": following.peer.address,
                "i": following.peer.node_id,
                "c": circuits[i + 1].hex(),
            },
            "inner": base64.b64encode(inner).decode(),
        }
        plain = json.dumps(layer, separators=(",", ":")).encode()
        inner = SUITE.encrypt(
            plain, hops[i].key, info=OPEN_INFO + str(hops[i].peer.node_id).encode()
        )
    return inner, circuits, keys


def open_layer(message: bytes, me: Identity, key: X25519PrivateKey) -> Layer:
    """This hop's layer of an open message; ``BadTunnel`` when it was not made for this node or
    is malformed."""
    try:
        plain = SUITE.decrypt(message, key, info=OPEN_INFO + me.node_id.encode())
    except (InvalidTag, ValueError):
        raise BadTunnel("the open message was not sealed for this node") from None
    try:
        data = loads(plain, "the open layer")
        circuit = bytes.fromhex(data["c"])
        secret = base64.b64decode(data["k"], validate=True)
        expires = float(data["exp"])
        inner = base64.b64decode(data["inner"], validate=True)
        following = data["next"]
        nxt = (
            None
            if following is None
            else NextHop(
                PeerRef(str(following["a"]), str(following["i"])), bytes.fromhex(following["c"])
            )
        )
    except (BadInput, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise BadTunnel(f"malformed open layer: {exc!r}") from None
    if not math.isfinite(expires):
        raise BadTunnel("malformed open layer: its expiry is not a time")
    if data.get("v") != VERSION:
        raise BadTunnel(f"unknown tunnel version {data.get('v')!r}")
    if len(circuit) != CIRCUIT_SIZE or len(secret) != 32:
        raise BadTunnel("malformed open layer: circuit or key of the wrong size")
    if nxt is not None and (
        len(nxt.circuit) != CIRCUIT_SIZE or not is_node_id(str(nxt.peer.node_id))
    ):
        raise BadTunnel("malformed open layer: bad next hop")
    if nxt is None and inner:
        raise BadTunnel("malformed open layer: the destination's layer has an inner message")
    return Layer(circuit, secret, expires, nxt, inner)


def seal_layer(key: bytes, circuit: bytes, kind: int, inner: bytes, *, forward: bool) -> bytes:
    """One hop's layer around ``inner``."""
    nonce = os.urandom(NONCE_SIZE)
    label = FORWARD if forward else BACKWARD
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, bytes([kind]) + inner, label + circuit)


def peel_layer(key: bytes, circuit: bytes, layer: bytes, *, forward: bool) -> tuple[int, bytes]:
    """``(kind, inner)`` of one hop's layer; ``BadTunnel`` when the key or label does not fit or
    anything was changed."""
    if len(layer) < LAYER_OVERHEAD:
        raise BadTunnel("tunnel message too short")
    label = FORWARD if forward else BACKWARD
    try:
        aead = ChaCha20Poly1305(key)
        plain = aead.decrypt(layer[:NONCE_SIZE], layer[NONCE_SIZE:], label + circuit)
    except InvalidTag:
        raise BadTunnel("tunnel message does not open with this circuit's key") from None
    return plain[0], plain[1:]


def wrap(keys: Sequence[bytes], circuits: Sequence[bytes], kind: int, payload: bytes) -> bytes:
    """The client's message: ``payload`` sealed for the last hop, then each hop before it."""
    message = payload
    for key, circuit in zip(reversed(keys), reversed(circuits), strict=True):
        message = seal_layer(key, circuit, kind, message, forward=True)
    return message


def unwrap(keys: Sequence[bytes], circuits: Sequence[bytes], message: bytes) -> bytes:
    """The destination's answer, once every hop's backward layer is removed (first hop's
    outermost)."""
    for key, circuit in zip(keys, circuits, strict=True):
        _, message = peel_layer(key, circuit, message, forward=False)
    return message


def bucket(size: int) -> int:
    """The padded size for ``size`` bytes: a power of two from 512 B to 64 KiB, then a multiple
    of 64 KiB, so sizes tell an observer little."""
    target = MIN_BUCKET
    while target < size and target < MAX_BUCKET_STEP:
        target *= 2
    if target >= size:
        return target
    return -(-size // MAX_BUCKET_STEP) * MAX_BUCKET_STEP


def pad(data: bytes) -> bytes:
    framed = struct.pack(">I", len(data)) + data
    return framed + bytes(bucket(len(framed)) - len(framed))


def unpad(padded: bytes) -> bytes:
    if len(padded) < 4:
        raise BadTunnel("padded message too short")
    (size,) = struct.unpack_from(">I", padded)
    if size > len(padded) - 4:
        raise BadTunnel("padded message shorter than its length says")
    return padded[4 : 4 + size]


_HEAD = struct.Struct(">4sII")


def _encode(magic: bytes, head: dict[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(head, separators=(",", ":")).encode()
    return pad(_HEAD.pack(magic, len(encoded), len(body)) + encoded + body)


def _decode(magic: bytes, padded: bytes) -> tuple[dict[str, Any], bytes]:
    data = unpad(padded)
    if len(data) < _HEAD.size:
        raise BadTunnel("tunnel payload too short")
    got, head_size, body_size = _HEAD.unpack_from(data)
    if got != magic or _HEAD.size + head_size + body_size != len(data):
        raise BadTunnel("malformed tunnel payload")
    try:
        head = loads(data[_HEAD.size : _HEAD.size + head_size], "the tunnel payload header")
    except BadInput:
        raise BadTunnel("malformed tunnel payload header") from None
    if not isinstance(head, dict):
        raise BadTunnel("malformed tunnel payload header")
    return head, data[_HEAD.size + head_size :]


def encode_request(
    method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> bytes:
    """A request to the destination's services, padded."""
    return _encode(b"HMTQ", {"m": method, "p": path, "h": [list(h) for h in headers]}, body)


def decode_request(padded: bytes) -> tuple[str, str, tuple[tuple[str, str], ...], bytes]:
    """``(method, target, headers, body)``; ``BadTunnel`` when malformed."""
    head, body = _decode(b"HMTQ", padded)
    try:
        headers = tuple((str(k).lower(), str(v)) for k, v in head.get("h", ()))
        return str(head["m"]), str(head["p"]), headers, body
    except (KeyError, TypeError, ValueError):
        raise BadTunnel("malformed tunnel request") from None


def encode_response(
    status: int, content_type: str, headers: Sequence[tuple[str, str]], body: bytes
) -> bytes:
    """The destination's answer, padded."""
    return _encode(b"HMTR", {"s": status, "t": content_type, "h": [list(h) for h in headers]}, body)


def decode_response(padded: bytes) -> tuple[int, str, tuple[tuple[str, str], ...], bytes]:
    head, body = _decode(b"HMTR", padded)
    try:
        headers = tuple((str(k), str(v)) for k, v in head.get("h", ()))
        return int(head["s"]), str(head["t"]), headers, body
    except (KeyError, TypeError, ValueError):
        raise BadTunnel("malformed tunnel response") from None
