"""Signed, end-to-end encrypted messages between nodes: sign, then seal with HPKE.

Each node has a messaging key (X25519, ``message.key`` in its directory, mode 0600) besides its
identity (Ed25519). It publishes the public half as a *key card* signed by its identity, so a
sender that knows the recipient's node ID (pinned, as everywhere) can trust the key it seals to.

A message, before sealing, is the sender's signature over a domain-separated body that names
both ends — so a recipient cannot pass a message on as if it had been sent to someone else::

    "hypermesh-message-v1" NUL || sender key (32) || recipient key (32) || id (16)
      || time ms (8) || chain reference (72: author, seq, hash of the sender's message block)
      || text length (4) || text

followed by the 64-byte Ed25519 signature. That is sealed with HPKE (RFC 9180, base mode:
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), ``info`` binding the recipient's
node key; cryptography's HPKE does the work. Only the holder of the recipient's X25519 key can
open it; any change to the ciphertext fails the AEAD; a valid ciphertext whose signature or
recipient does not match is refused, and so is one naming a block of another chain than the
sender's (the recipient's receipt links to that block, and its node follows the chain).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hypermesh.chain.block import MAX_STORED
from hypermesh.errors import HyperMeshError
from hypermesh.files import write_atomic
from hypermesh.transport.identity import (
    Identity,
    node_id_from_public_key,
    public_key_from_node_id,
    verify_with_key,
)
from hypermesh.transport.keycards import make_card, read_card

CONTEXT = b"hypermesh-message-v1\0"
CARD_CONTEXT = b"hypermesh-message-key-v1\0"
INFO = b"hypermesh-message-v1 to "
KEY_FILE = "message.key"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
MAX_TEXT = 64 * 1024
_FIXED = struct.Struct(">32s32s16sQ32sQ32sI")


class BadMessage(HyperMeshError):
    """A message that cannot be opened or does not check out (the text says which)."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A block of a chain: the sender's message block, or a receipt."""

    author: bytes
    seq: int
    hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "author": node_id_from_public_key(self.author),
            "seq": self.seq,
            "hash": self.hash.hex(),
        }


@dataclass(frozen=True, slots=True)
class Message:
    sender: bytes
    recipient: bytes
    id: bytes
    timestamp_ms: int
    block: Ref
    text: bytes


def load_or_create_message_key(directory: Path) -> X25519PrivateKey:
    """The node's X25519 messaging key, created (0600) on first use."""
    path = directory / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, X25519PrivateKey):
            raise BadMessage(f"{path} is not an X25519 key")
        return key
    key = X25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(path, pem.decode(), mode=0o600)
    return key


def key_card(identity: Identity, key: X25519PrivateKey) -> dict[str, str]:
    """The node's messaging key, signed by its identity."""
    return make_card(identity, key, CARD_CONTEXT)


def check_card(card: Any, node_id: str) -> X25519PublicKey:
    """The messaging key in ``card`` after checking it is signed by ``node_id``."""
    key = read_card(card, node_id, CARD_CONTEXT)
    if key is None:
        raise BadMessage(f"not a key card, or not signed by {node_id}")
    return key


def seal(
    sender: Identity,
    recipient_id: str,
    recipient_key: X25519PublicKey,
    text: bytes,
    block: Ref,
    *,
    message_id: bytes,
    timestamp_ms: int,
) -> bytes:
    """Sign and encrypt ``text`` for the recipient; returns the ciphertext. ``block`` is the
    sender's chain block that records the sending (``message_id`` names the message)."""
    if len(text) > MAX_TEXT:
        raise BadMessage(f"a message has at most {MAX_TEXT} bytes")
    if len(message_id) != 16:
        raise BadMessage("a message id is 16 bytes")
    recipient = public_key_from_node_id(recipient_id)
    body = (
        _FIXED.pack(
            sender.public_key_bytes,
            recipient,
            message_id,
            timestamp_ms,
            block.author,
            block.seq,
            block.hash,
            len(text),
        )
        + text
    )
    signed = body + sender.sign(CONTEXT + body)
    return SUITE.encrypt(signed, recipient_key, info=INFO + recipient)


def open_sealed(ciphertext: bytes, me: Identity, key: X25519PrivateKey) -> Message:
    """Decrypt and check a message sent to ``me``; ``BadMessage`` saying why not."""
    recipient = me.public_key_bytes
    try:
        signed = SUITE.decrypt(ciphertext, key, info=INFO + recipient)
    except (InvalidTag, ValueError) as exc:
        raise BadMessage(f"the message cannot be opened with this node's key ({exc!r})") from None
    if len(signed) < _FIXED.size + 64:
        raise BadMessage("the message is too short")
    body, signature = signed[:-64], signed[-64:]
    fields = _FIXED.unpack_from(body)
    sender, to, message_id, ts, author, seq, digest, length = fields
    if len(body) != _FIXED.size + length:
        raise BadMessage("the message's length does not match its text")
    if to != recipient:
        raise BadMessage("the message was sealed for another node")
    if not verify_with_key(sender, CONTEXT + body, signature):
        raise BadMessage("the sender's signature does not verify")
    if author != sender:  # the receipt links to it: it must be the sender's own block
        raise BadMessage("the message names a block of another chain than the sender's")
    if seq > MAX_STORED or ts > MAX_STORED:
        raise BadMessage(f"the message's block height or time is past {MAX_STORED}")
    return Message(sender, to, message_id, ts, Ref(author, seq, digest), body[_FIXED.size :])
