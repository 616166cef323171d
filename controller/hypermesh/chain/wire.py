"""Blocks and proofs as JSON, the same on both sides of the chain API."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from hypermesh.chain.block import KIND_NUMBERS, BadBlock, Block, Link
from hypermesh.transport.identity import node_id_from_public_key, public_key_from_node_id


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


def link_from_json(data: Any) -> Link:
    """A link from ``{"author": NODE_ID, "seq": N, "hash": HEX}``; ``BadBlock`` if malformed."""
    try:
        digest = bytes.fromhex(str(data["hash"]))
        if len(digest) != 32:
            raise ValueError("the hash is not 32 bytes")
        return Link(public_key_from_node_id(str(data["author"])), int(data["seq"]), digest)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadBlock(f"a link must be {{author, seq, hash}}: {exc}") from None


def block_from_json(data: Any) -> tuple[Block, bytes | None]:
    """The block (checked) and its payload, if sent; ``BadBlock`` when they do not hold."""
    try:
        block = Block.from_wire(base64.b64decode(str(data["wire"]), validate=True))
        raw = data.get("payload")
        payload = None if raw is None else base64.b64decode(str(raw), validate=True)
    except (KeyError, TypeError, binascii.Error, ValueError) as exc:
        raise BadBlock(f"not a block in JSON: {exc}") from None
    if payload is not None and not block.payload_matches(payload):
        raise BadBlock(f"block {block.seq}: the payload does not match its hash")
    return block, payload


def kind_number(name: str | int) -> int:
    """A kind by name (``note``, ``link``, …) or number."""
    if isinstance(name, int) or str(name).isdigit():
        number = int(name)
        if 0 <= number <= 255:
            return number
    elif str(name) in KIND_NUMBERS:
        return KIND_NUMBERS[str(name)]
    known = ", ".join(KIND_NUMBERS)
    raise BadBlock(f"kind {name!r} is not one of {known} or a number 0-255")
