"""The relay's frames: every helper round-trips, the decoder takes a stream in any pieces, and
every malformed input is refused with ``RelayProtocolError`` naming what is wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.transport import relaywire as wire
from hypermesh.transport.identity import Identity
from hypermesh.transport.relaywire import Frame, FrameDecoder, RelayProtocolError

RELAY = Identity.generate()
NODE = Identity.generate()
NONCE = bytes(range(32))


def _one(data: bytes) -> Frame:
    frames = FrameDecoder().feed(data)
    assert len(frames) == 1
    return frames[0]


def test_constants_are_the_contracts() -> None:
    assert wire.AUTH_CONTEXT == b"hypermesh-relay-v1\0"
    assert wire.RELAY_ALPN == "hm-relay"
    assert (wire.CHALLENGE, wire.AUTH, wire.WELCOME, wire.REFUSED) == (1, 2, 3, 4)
    assert (wire.SEND, wire.RECV, wire.GONE, wire.LIMIT) == (0x10, 0x11, 0x12, 0x13)
    assert (wire.PING, wire.PONG) == (0x20, 0x21)


def test_encode_writes_type_length_payload() -> None:
    assert wire.encode(wire.PING, b"12345678") == b"\x20\x00\x0812345678"
    big = wire.encode(wire.SEND, bytes(32) + b"x" * (wire.MAX_PACKET))
    assert big[1:3] == b"\xff\xff" and len(big) == 3 + 65535


def test_challenge_and_auth_round_trip_and_verify() -> None:
    frame = _one(wire.challenge(NONCE, RELAY.node_id))
    assert frame.type == wire.CHALLENGE
    nonce, relay_id = wire.parse_challenge(frame.payload)
    assert (nonce, relay_id) == (NONCE, RELAY.node_id)
    answer = _one(wire.auth(NODE, nonce, relay_id))
    assert answer.type == wire.AUTH
    key, signature = wire.parse_auth(answer.payload)
    assert key == NODE.public_key_bytes and len(signature) == 64
    assert wire.verify_auth(answer.payload, NONCE, RELAY.node_id) == NODE.node_id


def test_auth_does_not_verify_for_another_nonce_relay_or_key() -> None:
    payload = _one(wire.auth(NODE, NONCE, RELAY.node_id)).payload
    assert wire.verify_auth(payload, bytes(32), RELAY.node_id) is None
    assert wire.verify_auth(payload, NONCE, NODE.node_id) is None
    other = Identity.generate()
    swapped = other.public_key_bytes + payload[32:]
    assert wire.verify_auth(swapped, NONCE, RELAY.node_id) is None
    flipped = payload[:40] + bytes([payload[40] ^ 1]) + payload[41:]
    assert wire.verify_auth(flipped, NONCE, RELAY.node_id) is None
    # the identity key (a small-order point) is never taken as proof
    weak = bytes([1]) + bytes(31) + bytes(64)
    assert wire.verify_auth(weak, NONCE, RELAY.node_id) is None


def test_the_signature_covers_the_context() -> None:
    bare = NODE.sign(NONCE + RELAY.node_id.encode())
    payload = NODE.public_key_bytes + bare
    assert wire.verify_auth(payload, NONCE, RELAY.node_id) is None


def test_welcome_refused_limit_round_trip() -> None:
    welcome = wire.parse_welcome(_one(wire.welcome("10.0.0.1:4433", 3600, {"a": 1})).payload)
    assert welcome == wire.Welcome("10.0.0.1:4433", 3600.0, {"a": 1})
    status, error = wire.parse_refused(_one(wire.refused(403, "not a member")).payload)
    assert (status, error) == (403, "not a member")
    frame = _one(wire.limit(NODE.node_id, "too many bytes"))
    assert frame.type == wire.LIMIT
    assert wire.parse_limit(frame.payload) == (NODE.node_id, "too many bytes")


def test_packets_gone_ping_round_trip() -> None:
    for build, kind in ((wire.send, wire.SEND), (wire.recv, wire.RECV)):
        frame = _one(build(NODE.node_id, b"\xc0quic packet"))
        assert frame.type == kind
        assert wire.parse_packet(frame.payload) == (NODE.node_id, b"\xc0quic packet")
    frame = _one(wire.gone(NODE.node_id))
    assert (frame.type, wire.parse_gone(frame.payload)) == (wire.GONE, NODE.node_id)
    assert _one(wire.ping(b"abcdefgh")) == Frame(wire.PING, b"abcdefgh")
    assert _one(wire.pong(b"abcdefgh")) == Frame(wire.PONG, b"abcdefgh")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: wire.encode(0x7F, b""), "unknown relay frame type 0x7f"),
        (lambda: wire.encode(wire.SEND, bytes(32) + bytes(65504)), "too long"),
        (lambda: wire.encode(wire.PING, b"1234567"), "too short"),
        (lambda: wire.challenge(b"short", RELAY.node_id), "32 bytes"),
        (lambda: wire.challenge(NONCE, "hm1nope"), "malformed node ID"),
        (lambda: wire.refused(500, "no"), "status"),
        (lambda: wire.send(NODE.node_id, b""), "too short"),
        (lambda: wire.send("hm1" + "a" * 52 + "x", b"p"), "malformed node ID"),
    ],
)
def test_building_a_bad_frame_is_a_value_error(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


HEADERS = [
    (b"\x7f\x00\x00", "unknown relay frame type 0x7f"),
    (b"\x00\x00\x00", "unknown relay frame type 0x00"),
    (b"\x01\x00\x20", "CHALLENGE frame payload too short: 32 bytes, at least 87"),
    (b"\x01\x01\x00", "CHALLENGE frame payload too long"),
    (b"\x02\x00\x5f", "AUTH frame payload too short: 95"),
    (b"\x02\x00\x61", "AUTH frame payload too long: 97"),
    (b"\x03\x00\x01", "WELCOME frame payload too short"),
    (b"\x04\x00\x00", "REFUSED frame payload too short"),
    (b"\x10\x00\x20", "SEND frame payload too short: 32 bytes, at least 33"),
    (b"\x11\x00\x00", "RECV frame payload too short"),
    (b"\x12\x00\x1f", "GONE frame payload too short"),
    (b"\x12\x00\x21", "GONE frame payload too long"),
    (b"\x13\x00\x21", "LIMIT frame payload too short"),
    (b"\x20\x00\x07", "PING frame payload too short"),
    (b"\x21\x00\x09", "PONG frame payload too long"),
]


@pytest.mark.parametrize(("header", "message"), HEADERS)
def test_a_bad_header_fails_before_its_payload_arrives(header: bytes, message: str) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(header[:2]) == []
    with pytest.raises(RelayProtocolError, match=message):
        decoder.feed(header[2:])
    # failed for good: the stream cannot be resynchronised
    with pytest.raises(RelayProtocolError, match=message):
        decoder.feed(wire.ping(b"12345678"))


def test_the_decoder_takes_a_stream_byte_by_byte_and_holds_one_partial_frame() -> None:
    stream = (
        wire.challenge(NONCE, RELAY.node_id)
        + wire.send(NODE.node_id, b"p" * 1000)
        + wire.ping(b"12345678")
    )
    decoder, frames = FrameDecoder(), []
    for i in range(len(stream)):
        frames += decoder.feed(stream[i : i + 1])
        assert decoder.buffered <= wire.HEADER + wire.MAX_PAYLOAD
    assert [f.type for f in frames] == [wire.CHALLENGE, wire.SEND, wire.PING]
    assert decoder.at_boundary()
    assert decoder.feed(stream[:5]) == [] and not decoder.at_boundary()


@pytest.mark.parametrize(
    ("parse", "payload", "message"),
    [
        (wire.parse_challenge, NONCE + b"x" * 55, "no valid relay node ID"),
        (wire.parse_challenge, NONCE + b"\xff" * 55, "no valid relay node ID"),
        (wire.parse_challenge, NONCE, "CHALLENGE payload has 32 bytes, expected 87"),
        (wire.parse_auth, bytes(95), "AUTH payload has 95 bytes, expected 96"),
        (wire.parse_welcome, b"[]", "must be a JSON object"),
        (wire.parse_welcome, b"{nope", "WELCOME payload is not JSON"),
        (wire.parse_welcome, b"\xff\xfe", "WELCOME payload is not JSON"),
        (wire.parse_welcome, b"[" * 5000 + b"]" * 5000, "not JSON"),
        (wire.parse_welcome, b'{"ttl": 1}', "no valid 'observed'"),
        (wire.parse_welcome, b'{"observed": "a:1", "ttl": 0}', "positive number"),
        (wire.parse_welcome, b'{"observed": "a:1", "ttl": true}', "positive number"),
        (wire.parse_welcome, b'{"observed": "a:1", "ttl": 1, "limits": 3}', "'limits'"),
        (wire.parse_refused, b'{"status": "403", "error": "x"}', "HTTP status"),
        (wire.parse_refused, b'{"status": 403}', "'error' must be a string"),
        (wire.parse_packet, bytes(32), "too short"),
        (wire.parse_gone, bytes(33), "GONE payload has 33 bytes, expected 32"),
        (wire.parse_limit, bytes(32) + b'{"error": 1}', "'error' must be a string"),
        (wire.parse_limit, bytes(32) + b"[1]", "must be a JSON object"),
    ],
)
def test_malformed_payloads_name_the_problem(parse: object, payload: bytes, message: str) -> None:
    with pytest.raises(RelayProtocolError, match=message):
        parse(payload)  # type: ignore[operator]


def test_json_frames_hold_no_more_than_a_frame() -> None:
    with pytest.raises(ValueError, match="too large"):
        wire.welcome("a:1", 1, {"x": "y" * 70000})
    # an error message is cut, never refused
    payload = _one(wire.refused(400, "e" * 5000)).payload
    assert len(json.loads(payload)["error"]) == 1000


FRAMES = st.one_of(
    st.binary(min_size=8, max_size=8).map(wire.ping),
    st.binary(min_size=8, max_size=8).map(wire.pong),
    st.binary(min_size=1, max_size=1500).map(lambda p: wire.send(NODE.node_id, p)),
    st.binary(min_size=1, max_size=1500).map(lambda p: wire.recv(RELAY.node_id, p)),
    st.text(max_size=50).map(lambda e: wire.refused(429, e)),
    st.just(wire.gone(NODE.node_id)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(FRAMES, max_size=12), st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_any_frames_in_any_pieces_come_out_whole(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frames)
    decoder, out, offset, i = FrameDecoder(), [], 0, 0
    while offset < len(stream):
        step = cuts[i % len(cuts)]
        out += decoder.feed(stream[offset : offset + step])
        offset, i = offset + step, i + 1
    assert [wire.encode(f.type, f.payload) for f in out] == frames
    assert decoder.at_boundary()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_frames_or_a_protocol_error(data: bytes) -> None:
    try:
        frames = FrameDecoder().feed(data)
    except RelayProtocolError:
        return
    for frame in frames:
        assert frame.type in wire.NAMES
