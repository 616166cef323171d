"""``hmctl chain …``: a node's chain through its HTTP/3 API.

The node is named as in the state (its address and key come from there); appends are signed
with the node's own key (``nodes/NAME/identity.key``), as only the node writes its chain.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from hypermesh.chain.block import BadBlock, Block
from hypermesh.chain.client import ChainClient
from hypermesh.chain.merkle import MerkleTree
from hypermesh.chain.provenance import Bundle, verify_bundle
from hypermesh.chain.verify import verify_chain
from hypermesh.chain.wire import block_json, kind_number, link_from_json
from hypermesh.chain.witness import Cosignature, count_valid
from hypermesh.cli.common import state_dir
from hypermesh.cli.render import table
from hypermesh.cli.state import nodes_and_networks, running_node
from hypermesh.errors import UsageError
from hypermesh.transport.identity import (
    held_identity,
    load_or_create_identity,
    public_key_from_node_id,
)


def _node(args: argparse.Namespace) -> tuple[ChainClient, Path]:
    """The client for the named node's chain, and the node's directory (its key)."""
    directory = state_dir(args)
    nodes, _ = nodes_and_networks(directory)
    address, identity = running_node(nodes, args.node)
    node_dir = directory / "nodes" / args.node
    client = ChainClient(address, identity, caller=held_identity(node_dir), timeout=args.timeout)
    return client, node_dir


def _time(ms: int) -> str:
    when = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def log(args: argparse.Namespace) -> int:
    client, _ = _node(args)

    async def run() -> tuple[dict[str, Any], list[tuple[Block, bytes | None]]]:
        head = await client.head()
        start = max(0, int(head["size"]) - args.limit)
        got = [item async for item in client.blocks(start)]
        return head, got

    head, got = asyncio.run(run())
    if args.output == "json":
        print(json.dumps([block_json(b, p) for b, p in got], indent=2))
        return 0
    rows = [
        [
            b.seq,
            b.kind_name,
            _time(b.timestamp_ms),
            b.hash.hex()[:16],
            len(b.links),
            b.payload_size,
            _preview(p),
        ]
        for b, p in reversed(got)
    ]
    sys.stdout.write(table(["SEQ", "KIND", "TIME", "HASH", "LINKS", "BYTES", "PAYLOAD"], rows))
    print(f"# {head['size']} blocks, tree head {head['root'][:16]}…, author {head['author']}")
    return 0


def _preview(payload: bytes | None) -> str:
    if payload is None:
        return "(redacted)"
    text = payload[:40].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "." for c in text) + ("…" if len(payload) > 40 else "")


def show(args: argparse.Namespace) -> int:
    client, _ = _node(args)
    block, payload = asyncio.run(client.block(args.seq))
    print(json.dumps(block_json(block, payload), indent=2))
    return 0


def append(args: argparse.Namespace) -> int:
    client, node_dir = _node(args)
    if not (node_dir / "identity.key").exists():
        raise UsageError(f"the key of node {args.node!r} is not in {node_dir}: only it appends")
    text = (args.text or "").encode()
    payload = Path(args.file).read_bytes() if args.file is not None else text
    try:
        kind_number(args.kind)
        links = tuple(link_from_json(_parse_link(text)) for text in args.link)
    except BadBlock as exc:
        raise UsageError(str(exc)) from None
    signer = load_or_create_identity(node_dir)
    block = asyncio.run(client.append(signer, args.kind, payload, links))
    print(f"block {block.seq} appended: {block.hash.hex()}")
    return 0


def _parse_link(text: str) -> dict[str, Any]:
    """``NODE_ID:SEQ:HASH`` as a link."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"--link {text!r}: write NODE_ID:SEQ:HASH")
    public_key_from_node_id(parts[0])
    return {"author": parts[0], "seq": parts[1], "hash": parts[2]}


def provenance(args: argparse.Namespace) -> int:
    client, _ = _node(args)
    data = asyncio.run(client.provenance(args.seq, args.origin))
    try:
        statement = verify_bundle(Bundle.from_json(data))
    except BadBlock as exc:
        print(f"FAILED: the node's bundle does not verify: {exc}")
        return 1
    text = json.dumps(data, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"bundle written to {args.out}: {statement}")
    else:
        sys.stdout.write(text)
    return 0


def verify(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        return _verify_bundle(Path(args.bundle))
    if not args.node:
        raise UsageError("name a node, or give --bundle FILE")
    client, _ = _node(args)

    async def run() -> tuple[dict[str, Any], list[tuple[Block, bytes | None]]]:
        head = await client.head()
        return head, [item async for item in client.blocks(0)]

    head, got = asyncio.run(run())
    author = public_key_from_node_id(str(head["author"]))
    try:
        result = verify_chain(got, author)
    except BadBlock as exc:
        print(f"FAILED: chain of {args.node}: {exc}")
        return 1
    if result.root.hex() != head["root"] or result.size != int(head["size"]):
        print(f"FAILED: chain of {args.node}: the blocks do not make the head it shows")
        return 1
    print(
        f"chain of {args.node} verified: {result.size} blocks, tree head {result.root.hex()}, "
        f"{result.payloads_checked} payloads checked"
    )
    if args.witnesses:
        return _check_witnesses(args, client, author, MerkleTree(b.leaf for b, _ in got))
    return 0


def _check_witnesses(
    args: argparse.Namespace, client: ChainClient, author: bytes, tree: MerkleTree
) -> int:
    """Require ``--witnesses`` cosignatures, by other nodes of this state, on the chain's
    latest checkpoint, which must be a head of the chain just verified."""
    data = asyncio.run(client.checkpoint())
    size, root = int(data["size"]), bytes.fromhex(data["root"])
    if size > tree.size or tree.root(size) != root:
        print(f"FAILED: the checkpoint (size {size}) is not a head of the chain verified")
        return 1
    trusted = _state_keys(args) - {author}
    cosignatures = [Cosignature.from_json(c) for c in data.get("cosignatures", [])]
    valid = count_valid(author, size, root, cosignatures, trusted)
    if valid < args.witnesses:
        print(
            f"FAILED: {valid} of the {args.witnesses} witnesses required cosigned the checkpoint "
            f"at size {size}"
        )
        return 1
    print(f"witnessed: {valid} witnesses of this state cosigned the checkpoint at size {size}")
    return 0


def _state_keys(args: argparse.Namespace) -> set[bytes]:
    nodes, _ = nodes_and_networks(state_dir(args))
    ids = [r.status.get("identity") for r in nodes.values()]
    return {public_key_from_node_id(str(i)) for i in ids if i}


def proof(args: argparse.Namespace) -> int:
    client, _ = _node(args)
    try:
        if args.consistency is not None:
            data = asyncio.run(client.consistency(args.consistency, args.seq))
            what = f"blocks 0-{data['from'] - 1} are a prefix of the {data['to']} blocks"
        else:
            data = asyncio.run(client.inclusion(args.seq, args.size))
            what = f"block {data['seq']} is in the tree of {data['size']} blocks"
    except BadBlock as exc:
        print(f"FAILED: {exc}")
        return 1
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        print(f"verified: {what} (head {data['root']}); proof of {len(data['proof'])} hashes:")
        for item in data["proof"]:
            print(f"  {item}")
    return 0


def _verify_bundle(path: Path) -> int:
    """Offline: nothing but the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the bundle {path}: {exc}") from None
    try:
        statement = verify_bundle(Bundle.from_json(data))
    except BadBlock as exc:
        print(f"FAILED: {path}: {exc}")
        return 1
    print(f"verified: {statement}")
    return 0
