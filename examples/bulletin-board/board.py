"""A signed bulletin board on HyperMesh chains, on the SDK.

    python examples/bulletin-board/board.py post north "the river path is closed"
    python examples/bulletin-board/board.py read               # every post of every node
    python examples/bulletin-board/board.py read --proofs      # and each post's inclusion proof

A post is a block of kind ``note`` on its author's own chain, signed by the author's node key;
the board is every node's chain read back and checked block by block (signature, hash links,
tree heads). A post cannot be forged, altered or quietly removed: the chains would not verify.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys

from hypermesh.errors import HyperMeshError
from hypermesh.sdk import Mesh

TOPIC = "hypermesh-board-v1"


async def post(state: str, node: str, text: str) -> None:
    async with Mesh.from_state(state, node=node) as mesh:
        body = json.dumps({"topic": TOPIC, "text": text}).encode()
        block = await mesh.append(body)
        print(f"posted as {node}: block {block.seq} ({block.hash.hex()[:16]}…)")


async def read(state: str, proofs: bool) -> int:
    async with Mesh.from_state(state) as mesh:
        posts = []
        for name, node in sorted(mesh.directory.items()):
            chain = mesh.chain(node)
            async for block, payload in chain.blocks():
                if block.kind_name != "note" or payload is None:
                    continue
                try:
                    data = json.loads(payload)
                except ValueError:
                    continue
                if not isinstance(data, dict) or data.get("topic") != TOPIC:
                    continue
                if block.author_id != node.node_id:
                    print(f"refused: block {block.seq} on {name}'s chain is not {name}'s")
                    return 1
                if proofs:
                    await chain.inclusion(block.seq)  # raises if the proof does not verify
                posts.append((block.timestamp_ms, name, block.seq, str(data.get("text", ""))))
        for ms, name, seq, text in sorted(posts):
            at = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%H:%M:%S")
            print(f"[{at}] {name} #{seq}: {text}" + ("  (proof ok)" if proofs else ""))
        print(f"{len(posts)} post(s) from {len({p[1] for p in posts})} node(s), all verified")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="A bulletin board on HyperMesh chains.")
    parser.add_argument("--state", default=".hypermesh", help="hmctl's state directory")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("post", help="post a line to a node's own chain")
    p.add_argument("node")
    p.add_argument("text")
    p = sub.add_parser("read", help="every post of every node, checked")
    p.add_argument("--proofs", action="store_true", help="check each post's inclusion proof")
    args = parser.parse_args()
    try:
        if args.action == "post":
            asyncio.run(post(args.state, args.node, args.text))
            return 0
        return asyncio.run(read(args.state, args.proofs))
    except HyperMeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
