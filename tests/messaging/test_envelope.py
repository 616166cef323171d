"""Messages are signed, then sealed with HPKE: only the recipient opens them, any change in
transit is refused, and a valid ciphertext with the wrong signer or recipient is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hypermesh.messaging.envelope import (
    BadMessage,
    Ref,
    check_card,
    key_card,
    load_or_create_message_key,
    open_sealed,
    seal,
)
from hypermesh.transport.identity import Identity

ALICE, BOB, CAROL = Identity.generate(), Identity.generate(), Identity.generate()


def keys(tmp_path: Path, who: str):  # type: ignore[no-untyped-def]
    return load_or_create_message_key(tmp_path / who)


def test_only_the_recipient_opens_and_the_sender_is_proven(tmp_path: Path) -> None:
    bob_key = keys(tmp_path, "bob")
    assert (tmp_path / "bob" / "message.key").stat().st_mode & 0o777 == 0o600
    assert keys(tmp_path, "bob").private_bytes_raw() == bob_key.private_bytes_raw()
    card = key_card(BOB, bob_key)
    their = check_card(card, BOB.node_id)
    block = Ref(ALICE.public_key_bytes, 7, hashlib.sha256(b"block").digest())
    sealed = seal(
        ALICE,
        BOB.node_id,
        their,
        b"meet at noon",
        block,
        message_id=b"\1" * 16,
        timestamp_ms=1_800_000_000_000,
    )
    assert b"meet at noon" not in sealed
    message = open_sealed(sealed, BOB, bob_key)
    assert message.text == b"meet at noon" and message.sender == ALICE.public_key_bytes
    assert message.block == block and message.id == b"\1" * 16

    # A third node cannot read it, even with the ciphertext in hand.
    with pytest.raises(BadMessage, match="cannot be opened"):
        open_sealed(sealed, CAROL, keys(tmp_path, "carol"))
    # Nor can Bob's identity with another messaging key.
    with pytest.raises(BadMessage, match="cannot be opened"):
        open_sealed(sealed, BOB, keys(tmp_path, "other"))


def test_a_message_tampered_in_transit_is_refused(tmp_path: Path) -> None:
    bob_key = keys(tmp_path, "bob")
    their = check_card(key_card(BOB, bob_key), BOB.node_id)
    block = Ref(ALICE.public_key_bytes, 1, bytes(32))
    sealed = seal(
        ALICE, BOB.node_id, their, b"pay 10", block, message_id=b"\2" * 16, timestamp_ms=1
    )
    for i in (0, len(sealed) // 2, len(sealed) - 1):
        flipped = bytearray(sealed)
        flipped[i] ^= 0x01
        with pytest.raises(BadMessage):
            open_sealed(bytes(flipped), BOB, bob_key)
    with pytest.raises(BadMessage):
        open_sealed(sealed[:-5], BOB, bob_key)


def test_forged_cards_and_forwarded_messages_are_refused(tmp_path: Path) -> None:
    bob_key, carol_key = keys(tmp_path, "bob"), keys(tmp_path, "carol")
    card = key_card(BOB, bob_key)
    with pytest.raises(BadMessage, match="not signed by"):
        check_card(card, CAROL.node_id)  # Bob's card passed off as Carol's
    swapped = {**key_card(BOB, carol_key), "signature": card["signature"]}
    with pytest.raises(BadMessage, match="not signed by"):
        check_card(swapped, BOB.node_id)
    # Sealed for Carol's key but naming Bob as the recipient: Carol sees it is not hers.
    block = Ref(ALICE.public_key_bytes, 1, bytes(32))
    sealed = seal(
        ALICE,
        BOB.node_id,
        carol_key.public_key(),
        b"x",
        block,
        message_id=b"\3" * 16,
        timestamp_ms=1,
    )
    with pytest.raises(BadMessage, match="cannot be opened"):
        open_sealed(sealed, CAROL, carol_key)  # info binds Bob's key: HPKE fails first


def test_a_message_naming_another_chains_block_is_refused(tmp_path: Path) -> None:
    """The recipient's receipt links to the block a message names, and its node then follows
    that chain: it must be the sender's own."""
    bob_key = keys(tmp_path, "bob")
    their = check_card(key_card(BOB, bob_key), BOB.node_id)
    elsewhere = Ref(CAROL.public_key_bytes, 1, bytes(32))
    sealed = seal(ALICE, BOB.node_id, their, b"x", elsewhere, message_id=b"\4" * 16, timestamp_ms=1)
    with pytest.raises(BadMessage, match="another chain than the sender's"):
        open_sealed(sealed, BOB, bob_key)


@pytest.mark.parametrize(("seq", "ts"), [(2**63, 1), (2**64 - 1, 1), (1, 2**63), (1, 2**64 - 1)])
def test_a_message_past_any_real_height_or_time_is_refused(
    tmp_path: Path, seq: int, ts: int
) -> None:
    bob_key = keys(tmp_path, "bob")
    their = check_card(key_card(BOB, bob_key), BOB.node_id)
    block = Ref(ALICE.public_key_bytes, seq, bytes(32))
    sealed = seal(ALICE, BOB.node_id, their, b"x", block, message_id=b"\5" * 16, timestamp_ms=ts)
    with pytest.raises(BadMessage, match="past"):
        open_sealed(sealed, BOB, bob_key)
