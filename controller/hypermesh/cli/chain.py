"""``hmctl chain …``: a node's chain through its HTTP/3 API.

The node is named as in the state (its address and key come from there); appends are signed
with the node's own key (``nodes/NAME/identity.key``), as only the node writes its chain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hypermesh.chain.block import BadBlock, Unverified
from hypermesh.chain.wire import block_json, kind_number, link_from_json
from hypermesh.cli.common import peer_ref, state_dir
from hypermesh.cli.render import table
from hypermesh.cli.state import nodes_and_networks, running_node
from hypermesh.errors import UsageError
from hypermesh.inputs import BadInput, number_text
from hypermesh.sdk.results import VerifiedChain
from hypermesh.sdk.sync import Mesh
from hypermesh.timefmt import rfc3339_epoch
from hypermesh.transport.identity import held_identity


def _node(args: argparse.Namespace) -> tuple[Mesh, Path]:
    """The SDK acting for the named node (its key, when this machine holds it, proven in
    every handshake), and the node's directory."""
    directory = state_dir(args)
    nodes, _ = nodes_and_networks(directory)
    address, identity = running_node(nodes, args.node)
    node_dir = directory / "nodes" / args.node
    node = peer_ref(address, identity)
    return Mesh.of(held_identity(node_dir), node=node, timeout=args.timeout), node_dir


def _time(ms: int) -> str:
    return rfc3339_epoch(ms / 1000)


def log(args: argparse.Namespace) -> int:
    mesh, _ = _node(args)
    head = mesh.head()
    got = mesh.entries(start=max(0, head.size - args.limit))
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
    print(f"# {head.size} blocks, tree head {head.root.hex()[:16]}…, author {head.author}")
    return 0


PREVIEW = 40
"""Characters of a text payload shown in ``chain log``; a binary one shows half as many bytes
in hex."""


def _preview(payload: bytes | None) -> str:
    """A text payload's start, printable; a binary one (not UTF-8, or with control characters
    other than whitespace) as ``hex:`` and its first bytes: never raw bytes on a terminal."""
    if payload is None:
        return "(redacted)"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:  # cut inside a character past the preview is still text
        text = payload[: exc.start].decode() if exc.start >= PREVIEW else ""
        if not text:
            return _hex(payload)
    if any(not (c.isprintable() or c in "\t\n\r") for c in text[:PREVIEW]):
        return _hex(payload)
    start = text[:PREVIEW]
    return " ".join(start.split()) + ("…" if len(start.encode()) < len(payload) else "")


def _hex(payload: bytes) -> str:
    half = PREVIEW // 2
    return f"hex:{payload[:half].hex()}" + ("…" if len(payload) > half else "")


def show(args: argparse.Namespace) -> int:
    mesh, _ = _node(args)
    block, payload = mesh.block(args.seq)
    print(json.dumps(block_json(block, payload), indent=2))
    return 0


def append(args: argparse.Namespace) -> int:
    mesh, node_dir = _node(args)
    if not (node_dir / "identity.key").exists():
        raise UsageError(f"the key of node {args.node!r} is not in {node_dir}: only it appends")
    text = (args.text or "").encode()
    payload = Path(args.file).read_bytes() if args.file is not None else text
    try:
        kind_number(args.kind)
        links = tuple(link_from_json(_parse_link(text)) for text in args.link)
    except BadBlock as exc:
        raise UsageError(str(exc)) from None
    block = mesh.append(payload, kind=args.kind, links=links)
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
    mesh, _ = _node(args)
    try:
        bundle = mesh.provenance(args.seq, args.origin)
        statement = Mesh.verify_bundle(bundle)
    except Unverified as exc:
        return _failed("the node's bundle does not verify", exc)
    text = json.dumps(bundle.to_json(), indent=2) + "\n"
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
    mesh, _ = _node(args)
    try:
        chain = mesh.verify_chain()
    except Unverified as exc:  # a block, a payload or the head: every failure alike
        return _failed(f"chain of {args.node}", exc)
    print(
        f"chain of {args.node} verified: {chain.size} blocks, tree head {chain.root.hex()}, "
        f"{chain.payloads_checked} payloads checked"
    )
    if args.witnesses:
        return _check_witnesses(args, mesh, chain)
    return 0


def _check_witnesses(args: argparse.Namespace, mesh: Mesh, chain: VerifiedChain) -> int:
    """Require ``--witnesses`` cosignatures, by other nodes of this state, on the chain's
    latest checkpoint, which must be a head of the chain just verified."""
    try:
        size, valid = mesh.witnesses(chain, _state_ids(args))
    except Unverified as exc:
        print(f"FAILED: {exc}")
        return 1
    if valid < args.witnesses:
        print(
            f"FAILED: {valid} of the {args.witnesses} witnesses required cosigned the checkpoint "
            f"at size {size}"
        )
        return 1
    print(f"witnessed: {valid} witnesses of this state cosigned the checkpoint at size {size}")
    return 0


def _state_ids(args: argparse.Namespace) -> list[str]:
    """The node IDs of this state's nodes."""
    nodes, _ = nodes_and_networks(state_dir(args))
    return [str(i) for i in (r.status.get("identity") for r in nodes.values()) if i]


def proof(args: argparse.Namespace) -> int:
    mesh, _ = _node(args)
    try:
        if args.consistency is not None:
            data = mesh.consistency(args.consistency, args.seq)
            what = f"blocks 0-{data['from'] - 1} are a prefix of the {data['to']} blocks"
        else:
            data = mesh.inclusion(args.seq, args.size)
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
        statement = Mesh.verify_bundle(data)
    except Unverified as exc:
        return _failed(str(path), exc)
    print(f"verified: {statement}")
    return 0
