"""The tunnel wire format: layers open only for their hop, any change fails, padding hides sizes."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from hypermesh.tunnel.onion import (
    CLOSE,
    DATA,
    BadTunnel,
    Hop,
    bucket,
    build_open,
    check_card,
    decode_request,
    encode_request,
    key_card,
    new_tunnel_key,
    open_layer,
    pad,
    peel_layer,
    seal_layer,
    unpad,
    unwrap,
    wrap,
)


def nodes(count: int):
    out = []
    for i in range(count):
        identity, key = Identity.generate(), new_tunnel_key()
        out.append(
            (
                identity,
                key,
                Hop(PeerRef(f"127.0.0.1:{4000 + i}", identity.node_id), key.public_key()),
            )
        )
    return out


def test_each_hop_opens_only_its_layer_and_learns_only_its_neighbour() -> None:
    path = nodes(3)
    message, circuits, keys = build_open([h for _, _, h in path], time.time() + 60)
    seen = []
    for i, (identity, key, _) in enumerate(path):
        for other_identity, other_key, _ in path:
            if other_identity is not identity:  # nobody else can open this hop's layer
                with pytest.raises(BadTunnel):
                    open_layer(message, other_identity, other_key)
        layer = open_layer(message, identity, key)
        assert layer.circuit == circuits[i] and layer.key == keys[i]
        seen.append(layer)
        message = layer.inner
    assert seen[0].next is not None and seen[0].next.peer.node_id == path[1][0].node_id
    assert seen[1].next is not None and seen[1].next.peer == path[2][2].peer
    assert seen[2].next is None and seen[2].inner == b""


def test_fresh_circuits_and_keys_per_tunnel() -> None:
    hops = [h for _, _, h in nodes(2)]
    _, circuits_a, keys_a = build_open(hops, time.time() + 60)
    _, circuits_b, keys_b = build_open(hops, time.time() + 60)
    assert not set(circuits_a) & set(circuits_b)
    assert not set(keys_a) & set(keys_b)


def test_layers_peel_in_order_and_tampering_fails() -> None:
    hops = [h for _, _, h in nodes(3)]
    _, circuits, keys = build_open(hops, time.time() + 60)
    payload = encode_request("GET", "/status")
    message = wrap(keys, circuits, DATA, payload)
    tampered = bytearray(message)
    tampered[-1] ^= 1
    with pytest.raises(BadTunnel):
        peel_layer(keys[0], circuits[0], bytes(tampered), forward=True)
    with pytest.raises(BadTunnel):  # the right key on another circuit's label
        peel_layer(keys[0], circuits[1], message, forward=True)
    for key, circuit in zip(keys, circuits, strict=True):
        kind, message = peel_layer(key, circuit, message, forward=True)
        assert kind == DATA
    assert decode_request(message) == ("GET", "/status", (), b"")
    # The way back: each hop adds its layer, the client removes them all.
    answer = b"reply"
    for key, circuit in reversed(list(zip(keys, circuits, strict=True))):
        answer = seal_layer(key, circuit, DATA, answer, forward=False)
    assert unwrap(keys, circuits, answer) == b"reply"
    closing = wrap(keys, circuits, CLOSE, b"")
    assert peel_layer(keys[0], circuits[0], closing, forward=True)[0] == CLOSE


def test_cards_are_signed_by_the_node_key() -> None:
    (identity, key, _), (other, _, _) = nodes(2)
    card = key_card(identity, key)
    assert check_card(card, identity.node_id)
    with pytest.raises(BadTunnel):
        check_card(card, other.node_id)
    with pytest.raises(BadTunnel):
        check_card(
            {**card, "x25519": key_card(other, new_tunnel_key())["x25519"]}, identity.node_id
        )


@given(st.binary(max_size=200_000))
def test_padding_round_trips_to_a_bucket(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) == bucket(len(data) + 4)
    assert unpad(padded) == data


def test_buckets_hide_small_differences() -> None:
    assert len(encode_request("GET", "/a")) == len(encode_request("POST", "/abc", body=b"x" * 300))
    assert bucket(70_000) == 128 * 1024


@pytest.mark.parametrize("expiry", [float("nan"), float("inf"), float("-inf"), "nan", "inf"])
def test_an_open_layer_whose_expiry_is_not_a_time_is_refused(expiry: object) -> None:
    # A NaN expiry fails every "expired?" comparison, so the relay would never sweep the
    # circuit; JSON has no NaN or Infinity, and a string spelling one is no time either.
    [(identity, key, hop)] = nodes(1)
    message, _, _ = build_open([hop], expiry)  # type: ignore[arg-type]
    with pytest.raises(BadTunnel, match=r"expiry|JSON"):
        open_layer(message, identity, key)
