"""Key rotation on the chain: the old key hands over to the new one, and both say so.

A rotation is a block of kind ``key`` on the node's chain, signed (as every block) by the old
key, whose payload carries the new key's consent::

    {"event": "rotate", "old": "<old node ID>", "new": "<new node ID>", "atMs": 1764633600000,
     "newSignature": base64(Ed25519 by the new key over
                            "hypermesh-key-rotation-v1" NUL || old key (32) || new key (32)
                            || atMs (8, big-endian))}

The new key starts a chain of its own whose first block (kind ``key``) links to the rotation
block and says where it came from::

    {"event": "rotated-from", "old": "<old node ID>", "seq": N, "hash": "<hex>"}

so anyone holding the two chains can follow the node from one key to the next; the registry's
revocation of the old key (``replacedBy``) says the same to nodes that hold no chain.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from hypermesh.chain.block import KIND_NUMBERS, BadBlock, Block, Link
from hypermesh.inputs import BadInput, check, integer_schema, validator
from hypermesh.transport.identity import (
    Identity,
    node_id_from_public_key,
    public_key_from_node_id,
    verify_with_key,
)

CONTEXT = b"hypermesh-key-rotation-v1\0"
KEY = KIND_NUMBERS["key"]


ROTATION = validator(
    {
        "type": "object",
        "properties": {
            "event": {"const": "rotate"},
            "old": {"type": "string", "format": "node-id"},
            "new": {"type": "string", "format": "node-id"},
            "atMs": integer_schema(),
            "newSignature": {"type": "string", "format": "base64", "maxLength": 88},
        },
        "required": ["event", "old", "new", "atMs", "newSignature"],
    }
)
"""A rotation block's payload."""


def _consent(old: bytes, new: bytes, at_ms: int) -> bytes:
    return CONTEXT + old + new + struct.pack(">Q", at_ms)


def rotation_payload(old: Identity, new: Identity, at_ms: int) -> bytes:
    """The payload of the rotation block (to be signed, as the block, by ``old``)."""
    signature = new.sign(_consent(old.public_key_bytes, new.public_key_bytes, at_ms))
    body = {
        "event": "rotate",
        "old": old.node_id,
        "new": new.node_id,
        "atMs": at_ms,
        "newSignature": base64.b64encode(signature).decode(),
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def check_rotation(block: Block, payload: bytes) -> tuple[str, str]:
    """``(old node ID, new node ID)`` of a rotation block, once checked: kind ``key``, the
    block's author is the old key, the new key's consent verifies. ``BadBlock`` otherwise."""
    if block.kind != KEY or not block.payload_matches(payload):
        raise BadBlock("not a key block with this payload")
    try:
        body: Any = json.loads(payload)
        check(ROTATION, body)
    except (ValueError, RecursionError, BadInput) as exc:
        raise BadBlock(f"malformed rotation: {str(exc)[:200]}") from None
    old, new, at_ms = body["old"], body["new"], body["atMs"]
    signature = base64.b64decode(body["newSignature"])
    new_key = public_key_from_node_id(new)
    if node_id_from_public_key(block.author) != old:
        raise BadBlock("the rotation is not signed by the key it retires")
    if not verify_with_key(new_key, _consent(block.author, new_key, at_ms), signature):
        raise BadBlock("the new key's consent does not verify")
    return old, new


def successor(old_id: str, seq: int, block_hash: bytes) -> tuple[bytes, Link]:
    """The payload and link of the first block of the new key's chain."""
    body = {"event": "rotated-from", "old": old_id, "seq": seq, "hash": block_hash.hex()}
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return payload, Link(public_key_from_node_id(old_id), seq, block_hash)
