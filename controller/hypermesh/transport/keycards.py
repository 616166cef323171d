"""Key cards: an X25519 public key vouched for by a node's Ed25519 key.

A node publishes the public half of a key it uses for something else (sealing messages, tunnel
layers) as ``{"node": NODE_ID, "x25519": base64, "signature": base64}``, the signature over a
``context`` that says what the key is for, followed by the raw key. Whoever pins the node ID can
check the card and trust the key for that purpose only.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hypermesh.transport.identity import Identity, public_key_from_node_id, verify_with_key


def raw_public(key: X25519PublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_card(identity: Identity, key: X25519PrivateKey, context: bytes) -> dict[str, str]:
    """The card of ``key``'s public half, signed by ``identity`` for ``context``."""
    public = raw_public(key.public_key())
    return {
        "node": identity.node_id,
        "x25519": base64.b64encode(public).decode(),
        "signature": base64.b64encode(identity.sign(context + public)).decode(),
    }


def read_card(card: Any, node_id: str, context: bytes) -> X25519PublicKey | None:
    """The key in ``card`` when ``node_id`` signed it for ``context``; None otherwise."""
    try:
        public = base64.b64decode(str(card["x25519"]), validate=True)
        signature = base64.b64decode(str(card["signature"]), validate=True)
        key = X25519PublicKey.from_public_bytes(public)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    if card.get("node") != node_id or not verify_with_key(
        public_key_from_node_id(node_id), context + public, signature
    ):
        return None
    return key
