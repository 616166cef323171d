"""Blocks and proofs as JSON, the same on both sides of the chain API, and the schemas their
fields are checked against (every number within its width in the block format)."""

from __future__ import annotations

import base64
import re
from typing import Any

from hypermesh.chain.block import KIND_NUMBERS, MAX_BLOCK_TEXT, BadBlock, Block, Link
from hypermesh.inputs import BadInput, check, integer_schema, validator
from hypermesh.transport.identity import node_id_from_public_key, public_key_from_node_id

WATCH_HEARTBEAT = 25.0
"""Seconds between heartbeats on an idle chain head feed (``GET /chain/v1/watch``): twice
within the QUIC idle timeout (60 s), so a watching connection stays open with no other traffic,
and within the 30 s a UDP NAT mapping is commonly kept for (25 s, the usual keepalive)."""
WATCH_SILENCE = 3 * WATCH_HEARTBEAT
"""A chain head feed silent this long (three heartbeats missed) is taken for dead."""

LINK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "author": {"type": "string", "format": "node-id"},
        "seq": integer_schema(),
        "hash": {"type": "string", "format": "hex32"},
    },
    "required": ["author", "seq", "hash"],
    "additionalProperties": False,
}
"""A link in JSON: ``{"author": NODE_ID, "seq": 0 … 2^64-1, "hash": 64 hex digits}``."""
LINK = validator(LINK_SCHEMA)
BLOCK = validator(
    {
        "type": "object",
        "properties": {
            "wire": {"type": "string", "format": "base64", "maxLength": MAX_BLOCK_TEXT},
            "payload": {"type": ["string", "null"], "format": "base64"},
        },
        "required": ["wire"],
    }
)
"""A block as a node shows it (``block_json``): its exact bytes and, when kept, its payload
(the other fields are for people, and are not read back)."""


def block_json(block: Block, payload: bytes | None = None) -> dict[str, Any]:
    """A block's fields for people and its exact bytes (``wire``, base64) for checking."""
    out: dict[str, Any] = {
        "seq": block.seq,
        "hash": block.hash.hex(),
        "kind": block.kind_name,
        "author": block.author_id,
        "prev": block.prev.hex(),
        "treeRoot": block.tree_root.hex(),
        "timestampMs": block.timestamp_ms,
        "payloadSize": block.payload_size,
        "payloadHash": block.payload_hash.hex(),
        "links": [link_json(link) for link in block.links],
        "wire": base64.b64encode(block.wire).decode(),
    }
    if payload is not None:
        out["payload"] = base64.b64encode(payload).decode()
    return out


def link_json(link: Link) -> dict[str, Any]:
    return {
        "author": node_id_from_public_key(link.author),
        "seq": link.seq,
        "hash": link.hash.hex(),
    }


def link_from_json(data: Any, where: str = "link") -> Link:
    """A link from ``{"author": NODE_ID, "seq": N, "hash": HEX}``; ``BadBlock`` naming the
    field (under ``where``) when malformed."""
    try:
        check(LINK, data, where)
    except BadInput as exc:
        raise BadBlock(f"a link must be {{author, seq, hash}}: {exc}") from None
    return Link(public_key_from_node_id(data["author"]), data["seq"], bytes.fromhex(data["hash"]))


def block_from_json(data: Any) -> tuple[Block, bytes | None]:
    """The block (checked) and its payload, if sent; ``BadBlock`` when they do not hold."""
    try:
        check(BLOCK, data)
    except BadInput as exc:
        raise BadBlock(f"not a block in JSON: {exc}") from None
    block = Block.from_wire(base64.b64decode(data["wire"]))
    raw = data.get("payload")
    payload = None if raw is None else base64.b64decode(raw)
    if payload is not None and not block.payload_matches(payload):
        raise BadBlock(f"block {block.seq}: the payload does not match its hash")
    return block, payload


_NUMBER = re.compile(r"[0-9]{1,3}")


def kind_number(name: str | int) -> int:
    """A kind by name (``note``, ``link``, …) or number 0-255 (an int, or ASCII digits)."""
    if isinstance(name, int) and not isinstance(name, bool):
        number = name
    elif isinstance(name, str) and _NUMBER.fullmatch(name):
        number = int(name)
    elif isinstance(name, str) and name in KIND_NUMBERS:
        return KIND_NUMBERS[name]
    else:
        number = -1
    if 0 <= number <= 255:
        return number
    known = ", ".join(KIND_NUMBERS)
    raise BadBlock(f"kind {name!r} is not one of {known} or a number 0-255")
