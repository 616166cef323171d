"""``hmctl chain …``: a node's chain through its HTTP/3 API.

The node is named as in the state (its address and key come from there); appends are signed
with the node's own key (``nodes/NAME/identity.key``), as only the node writes its chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from hypermesh.chain.block import BadBlock, Block, Unverified
from hypermesh.chain.client import ChainClient, Head
from hypermesh.chain.merkle import MerkleTree
from hypermesh.chain.provenance import Bundle, verify_bundle
from hypermesh.chain.verify import verify_chain
from hypermesh.chain.wire import block_json, kind_number, link_from_json
from hypermesh.chain.witness import count_valid
from hypermesh.cli.common import state_dir
from hypermesh.cli.render import table
from hypermesh.cli.state import nodes_and_networks, running_node
from hypermesh.errors import UsageError
from hypermesh.inputs import BadInput, number_text
from hypermesh.timefmt import rfc3339_epoch
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
    return rfc3339_epoch(ms / 1000)


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
    try:
        seq = number_text(parts[1], "SEQ")
    except BadInput as exc:
        raise UsageError(f"--link {text!r}: {exc}") from None
    return {"author": parts[0], "seq": seq, "hash": parts[2]}


def _failed(what: str, exc: Unverified) -> int:
    """A verification that did not hold: said on stdout, exit 1 (2 stays for errors)."""
    print(f"FAILED: {what}: {exc}")
    return 1


def provenance(args: argparse.Namespace) -> int:
    client, _ = _node(args)
    try:
        data = asyncio.run(client.provenance(args.seq, args.origin))
        statement = verify_bundle(Bundle.from_json(data))
    except Unverified as exc:
        return _failed("the node's bundle does not verify", exc)
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

    async def run() -> tuple[Head, list[tuple[Block, bytes | None]]]:
        head = await client.checked_head()
        return head, [item async for item in client.blocks(0)]

    try:
        head, got = asyncio.run(run())
        author = public_key_from_node_id(head.author)
        result = verify_chain(got, author)
        if result.root != head.root or result.size != head.size:
            raise Unverified("the blocks do not make the head it shows")
    except Unverified as exc:  # a block, a payload or the head: every failure alike
        return _failed(f"chain of {args.node}", exc)
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
    try:
        size, root, cosignatures = asyncio.run(client.checked_checkpoint())
    except Unverified as exc:
        return _failed("the checkpoint", exc)
    if size > tree.size or tree.root(size) != root:
        print(f"FAILED: the checkpoint (size {size}) is not a head of the chain verified")
        return 1
    trusted = _state_keys(args) - {author}
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
    except Unverified as exc:
        return _failed("the proof", exc)
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        print(f"verified: {what} (head {data['root']}); proof of {len(data['proof'])} hashes:")
        for item in data["proof"]:
            print(f"  {item}")
    return 0


def _verify_bundle(path: Path) -> int:
    """Offline: nothing but the file. A file that cannot be read is a usage error (exit 2);
    what it holds, JSON or not, either verifies or fails (exit 1)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the bundle {path}: {exc}") from None
    try:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise Unverified(f"not a provenance bundle: not JSON: {str(exc)[:200]}") from None
        statement = verify_bundle(Bundle.from_json(data))
    except Unverified as exc:
        return _failed(str(path), exc)
    print(f"verified: {statement}")
    return 0
