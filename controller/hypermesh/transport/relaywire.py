"""The relay's wire format: frames on one duplex byte stream between a node and its relay.

A node attaches to a relay over one byte stream (a QUIC stream or TLS over TCP, ALPN
``hm-relay``) and everything it exchanges with the relay is a frame::

    type u8 | length u16 big-endian | payload (length bytes, at most 65535)

The relay opens with CHALLENGE (a fresh nonce and its own node ID); the node proves its key with
AUTH (its raw public key and an Ed25519 signature over ``AUTH_CONTEXT + nonce + relay ID``, so
the proof is good for this relay and this stream only); the relay answers WELCOME (what it saw:
the node's address, the reservation's lifetime and limits) or REFUSED (a status and why) and
closes. Attached, the node sends SEND (a peer's key and one QUIC packet) and receives RECV (the
sender's key and the packet); GONE says a peer is not attached, LIMIT that a circuit ended on a
limit, PING/PONG keep the path alive and measure its RTT.

This module is pure (no I/O): it builds frames and parses them, checking every byte that comes
from the other side; anything malformed raises ``RelayProtocolError`` naming what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypermesh.errors import HyperMeshError
from hypermesh.transport.identity import (
    Identity,
    is_node_id,
    node_id_from_public_key,
    public_key_from_node_id,
    verify_with_key,
)

RELAY_ALPN = "hm-relay"
"""The ALPN of a relay attachment, over QUIC and over TLS/TCP."""
AUTH_CONTEXT = b"hypermesh-relay-v1\0"
"""What an AUTH signature covers first, so it can never be taken for another signed message."""

CHALLENGE = 0x01
AUTH = 0x02
WELCOME = 0x03
REFUSED = 0x04
SEND = 0x10
RECV = 0x11
GONE = 0x12
LIMIT = 0x13
PING = 0x20
PONG = 0x21

NAMES = {
    CHALLENGE: "CHALLENGE",
    AUTH: "AUTH",
    WELCOME: "WELCOME",
    REFUSED: "REFUSED",
    SEND: "SEND",
    RECV: "RECV",
    GONE: "GONE",
    LIMIT: "LIMIT",
    PING: "PING",
    PONG: "PONG",
}
"""Every frame type, by its name (for messages)."""

HEADER = 3
MAX_PAYLOAD = 0xFFFF
KEY_BYTES = 32
NONCE_BYTES = 32
SIGNATURE_BYTES = 64
PING_BYTES = 8

_SIZES: dict[int, tuple[int, int]] = {
    CHALLENGE: (NONCE_BYTES + 55, NONCE_BYTES + 55),
    AUTH: (KEY_BYTES + SIGNATURE_BYTES, KEY_BYTES + SIGNATURE_BYTES),
    WELCOME: (2, MAX_PAYLOAD),
    REFUSED: (2, MAX_PAYLOAD),
    SEND: (KEY_BYTES + 1, MAX_PAYLOAD),
    RECV: (KEY_BYTES + 1, MAX_PAYLOAD),
    GONE: (KEY_BYTES, KEY_BYTES),
    LIMIT: (KEY_BYTES + 2, MAX_PAYLOAD),
    PING: (PING_BYTES, PING_BYTES),
    PONG: (PING_BYTES, PING_BYTES),
}
"""The smallest and the largest payload of each frame type (a node ID is 55 characters; a
SEND or RECV carries at least one byte of packet; JSON at least ``{}``)."""

MAX_PACKET = MAX_PAYLOAD - KEY_BYTES
"""The largest QUIC packet a SEND or RECV frame carries."""


class RelayProtocolError(HyperMeshError):
    """The other side of a relay stream sent something that is not a valid frame."""


def name_of(frame_type: int) -> str:
    """The name of a frame type, or its number in hex when it is not one."""
    return NAMES.get(frame_type, f"0x{frame_type:02x}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as decoded: its type and its payload (size already checked for the type)."""

    type: int
    payload: bytes

    @property
    def name(self) -> str:
        return name_of(self.type)


def _check_size(frame_type: int, length: int) -> None:
    sizes = _SIZES.get(frame_type)
    if sizes is None:
        raise RelayProtocolError(f"unknown relay frame type 0x{frame_type:02x}")
    low, high = sizes
    if length < low:
        raise RelayProtocolError(
            f"{name_of(frame_type)} frame payload too short: {length} bytes, at least {low}"
        )
    if length > high:
        raise RelayProtocolError(
            f"{name_of(frame_type)} frame payload too long: {length} bytes, at most {high}"
        )


def encode(frame_type: int, payload: bytes) -> bytes:
    """One frame's bytes; ``ValueError`` for an unknown type or a payload of the wrong size."""
    try:
        _check_size(frame_type, len(payload))
    except RelayProtocolError as exc:
        raise ValueError(str(exc)) from None
    return bytes((frame_type,)) + len(payload).to_bytes(2, "big") + payload


class FrameDecoder:
    """Frames out of a byte stream fed in pieces as they arrive.

    The buffer never holds more than one incomplete frame (at most ``HEADER + MAX_PAYLOAD``
    bytes): whole frames are taken out at each ``feed``. A header is checked as soon as its
    three bytes are in, so a bad type or length fails before its payload is waited for. After
    an error the decoder stays failed: the stream cannot be resynchronised.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes, in order; ``RelayProtocolError`` if it is malformed."""
        if self._failed is not None:
            raise RelayProtocolError(self._failed)
        self._buffer += data
        frames: list[Frame] = []
        offset = 0
        buffer = self._buffer
        try:
            while len(buffer) - offset >= HEADER:
                frame_type = buffer[offset]
                length = int.from_bytes(buffer[offset + 1 : offset + 3], "big")
                _check_size(frame_type, length)
                end = offset + HEADER + length
                if end > len(buffer):
                    break
                frames.append(Frame(frame_type, bytes(buffer[offset + HEADER : end])))
                offset = end
        except RelayProtocolError as exc:
            self._failed = str(exc)
            self._buffer = bytearray()
            raise
        del buffer[:offset]
        return frames

    def at_boundary(self) -> bool:
        """True when no partial frame is held (a clean place for the stream to end)."""
        return not self._buffer


# -- the handshake -------------------------------------------------------------------------


def challenge(nonce: bytes, relay_id: str) -> bytes:
    """The CHALLENGE frame: a fresh 32-byte nonce and the relay's node ID."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a relay nonce has {NONCE_BYTES} bytes, not {len(nonce)}")
    public_key_from_node_id(relay_id)
    return encode(CHALLENGE, nonce + relay_id.encode("ascii"))


def parse_challenge(payload: bytes) -> tuple[bytes, str]:
    """``(nonce, relay ID)`` of a CHALLENGE payload."""
    _expect_length("CHALLENGE", payload, CHALLENGE)
    nonce, raw_id = payload[:NONCE_BYTES], payload[NONCE_BYTES:]
    relay_id = raw_id.decode("ascii", errors="replace")
    if not is_node_id(relay_id):
        raise RelayProtocolError(f"CHALLENGE names no valid relay node ID: {relay_id[:60]!r}")
    return nonce, relay_id


def auth_message(nonce: bytes, relay_id: str) -> bytes:
    """What an AUTH signature covers: the context, the relay's nonce and the relay's ID."""
    return AUTH_CONTEXT + nonce + relay_id.encode("ascii")


def auth(identity: Identity, nonce: bytes, relay_id: str) -> bytes:
    """The AUTH frame answering ``challenge(nonce, relay_id)``, signed by ``identity``."""
    signature = identity.sign(auth_message(nonce, relay_id))
    return encode(AUTH, identity.public_key_bytes + signature)


def parse_auth(payload: bytes) -> tuple[bytes, bytes]:
    """``(raw public key, signature)`` of an AUTH payload (not yet verified)."""
    _expect_length("AUTH", payload, AUTH)
    return payload[:KEY_BYTES], payload[KEY_BYTES:]


def verify_auth(payload: bytes, nonce: bytes, relay_id: str) -> str | None:
    """The node ID an AUTH payload proves for this challenge; None when its signature does not
    verify (a wrong key, another nonce or relay, a weak key)."""
    key, signature = parse_auth(payload)
    if not verify_with_key(key, auth_message(nonce, relay_id), signature):
        return None
    return node_id_from_public_key(key)


@dataclass(frozen=True, slots=True)
class Welcome:
    """What the relay says when it attaches a node."""

    observed: str
    """The node's address as the relay sees it (``ip:port``): a reflexive address."""
    ttl: float
    """Seconds the reservation lasts; authenticate again (on a new stream) before."""
    limits: Mapping[str, Any] = field(default_factory=dict)
    """The relay's limits (``RelayLimits`` as JSON)."""


def welcome(observed: str, ttl: float, limits: Mapping[str, Any]) -> bytes:
    """The WELCOME frame."""
    body = {"observed": observed, "ttl": ttl, "limits": dict(limits)}
    return encode(WELCOME, _json_bytes(body))


def parse_welcome(payload: bytes) -> Welcome:
    """The ``Welcome`` of a WELCOME payload."""
    body = _json_object("WELCOME", payload)
    observed, ttl, limits = body.get("observed"), body.get("ttl"), body.get("limits", {})
    if not isinstance(observed, str) or not observed or len(observed) > 64:
        raise RelayProtocolError(f"WELCOME has no valid 'observed' address: {observed!r}")
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
        raise RelayProtocolError(f"WELCOME 'ttl' must be a positive number: {ttl!r}")
    if not isinstance(limits, dict):
        raise RelayProtocolError("WELCOME 'limits' must be an object")
    return Welcome(observed, float(ttl), limits)


REFUSED_STATUSES = (400, 403, 429)


def refused(status: int, error: str) -> bytes:
    """The REFUSED frame: an HTTP-like status (400, 403 or 429) and why."""
    if status not in REFUSED_STATUSES:
        raise ValueError(f"a relay refusal status is one of {REFUSED_STATUSES}, not {status}")
    return encode(REFUSED, _json_bytes({"status": status, "error": error[:1000]}))


def parse_refused(payload: bytes) -> tuple[int, str]:
    """``(status, error)`` of a REFUSED payload."""
    body = _json_object("REFUSED", payload)
    status, error = body.get("status"), body.get("error")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise RelayProtocolError(f"REFUSED 'status' must be an HTTP status: {status!r}")
    if not isinstance(error, str):
        raise RelayProtocolError("REFUSED 'error' must be a string")
    return status, error


# -- attached ------------------------------------------------------------------------------


def send(peer_id: str, packet: bytes) -> bytes:
    """The SEND frame: one QUIC packet for ``peer_id``."""
    return encode(SEND, public_key_from_node_id(peer_id) + packet)


def recv(peer_id: str, packet: bytes) -> bytes:
    """The RECV frame: one QUIC packet from ``peer_id``."""
    return encode(RECV, public_key_from_node_id(peer_id) + packet)


def parse_packet(payload: bytes) -> tuple[str, bytes]:
    """``(peer's node ID, packet)`` of a SEND or RECV payload."""
    if len(payload) <= KEY_BYTES:
        raise RelayProtocolError(f"SEND/RECV payload too short: {len(payload)} bytes")
    return node_id_from_public_key(payload[:KEY_BYTES]), payload[KEY_BYTES:]


def gone(peer_id: str) -> bytes:
    """The GONE frame: ``peer_id`` is not attached to this relay."""
    return encode(GONE, public_key_from_node_id(peer_id))


def parse_gone(payload: bytes) -> str:
    """The node ID of a GONE payload."""
    _expect_length("GONE", payload, GONE)
    return node_id_from_public_key(payload)


def limit(peer_id: str, error: str) -> bytes:
    """The LIMIT frame: the circuit with ``peer_id`` was ended by a limit (``error`` says which)."""
    return encode(LIMIT, public_key_from_node_id(peer_id) + _json_bytes({"error": error[:1000]}))


def parse_limit(payload: bytes) -> tuple[str, str]:
    """``(peer's node ID, error)`` of a LIMIT payload."""
    _expect_length("LIMIT", payload, LIMIT)
    body = _json_object("LIMIT", payload[KEY_BYTES:])
    error = body.get("error")
    if not isinstance(error, str):
        raise RelayProtocolError("LIMIT 'error' must be a string")
    return node_id_from_public_key(payload[:KEY_BYTES]), error


def ping(data: bytes) -> bytes:
    """The PING frame carrying 8 bytes the other side echoes."""
    return encode(PING, data)


def pong(data: bytes) -> bytes:
    """The PONG frame echoing a PING's 8 bytes."""
    return encode(PONG, data)


# -- helpers -------------------------------------------------------------------------------


def _expect_length(what: str, payload: bytes, frame_type: int) -> None:
    low, high = _SIZES[frame_type]
    if not low <= len(payload) <= high:
        raise RelayProtocolError(
            f"{what} payload has {len(payload)} bytes, expected {low}"
            + ("" if low == high else f" to {high}")
        )


def _json_bytes(body: Mapping[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    if len(data) > MAX_PAYLOAD - KEY_BYTES:
        raise ValueError(f"relay frame JSON too large: {len(data)} bytes")
    return data


def _json_object(what: str, payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RelayProtocolError(f"{what} payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RelayProtocolError(f"{what} payload must be a JSON object")
    return body
