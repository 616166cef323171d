"""A chat between the nodes of a private network, on the HyperMesh SDK.

    python examples/chat/chat.py say ana bo "lunch at noon?"   # ana → bo, sealed, on both chains
    python examples/chat/chat.py listen bo --count 1            # bo prints what arrives
    python examples/chat/chat.py history bo                     # what bo has received

Every line is a message: sealed with HPKE for its recipient, signed by the sender's node key,
recorded on the sender's chain and acknowledged on the recipient's (docs/chains.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys

from hypermesh.errors import HyperMeshError
from hypermesh.sdk import Mesh


def when(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%H:%M:%S")


async def say(state: str, sender: str, to: str, text: str) -> None:
    async with Mesh.from_state(state, node=sender) as mesh:
        sent = await mesh.send(mesh.peer(to), text)
        print(f"{sender} → {to}: {text}  (block {sent['message']['seq']} of {sender}'s chain)")


async def listen(state: str, node: str, count: int, limit: float) -> None:
    async with Mesh.from_state(state, node=node) as mesh:
        names = {e.node_id: e.name for e in mesh.directory.values()}
        seen = 0
        async with asyncio.timeout(limit):
            async for message in mesh.messages(since_now=False):
                who = names.get(str(message["from"]), str(message["from"])[:12])
                print(f"[{when(int(message['sentMs']))}] {who}: {message['text']}", flush=True)
                seen += 1
                if seen >= count:
                    return


async def history(state: str, node: str) -> None:
    async with Mesh.from_state(state, node=node) as mesh:
        names = {e.node_id: e.name for e in mesh.directory.values()}
        for message in reversed(await mesh.inbox()):
            who = names.get(str(message["from"]), str(message["from"])[:12])
            print(f"[{when(int(message['sentMs']))}] {who}: {message['text']}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Chat between HyperMesh nodes.")
    parser.add_argument("--state", default=".hypermesh", help="hmctl's state directory")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("say", help="send a line from one node to another")
    p.add_argument("sender")
    p.add_argument("to")
    p.add_argument("text")
    p = sub.add_parser("listen", help="print messages as they arrive")
    p.add_argument("node")
    p.add_argument("--count", type=int, default=1_000_000, help="stop after this many")
    p.add_argument("--timeout", type=float, default=3600.0, help="stop after this long (s)")
    p = sub.add_parser("history", help="print what a node has received, oldest first")
    p.add_argument("node")
    args = parser.parse_args()
    try:
        if args.action == "say":
            asyncio.run(say(args.state, args.sender, args.to, args.text))
        elif args.action == "listen":
            asyncio.run(listen(args.state, args.node, args.count, args.timeout))
        else:
            asyncio.run(history(args.state, args.node))
    except (HyperMeshError, TimeoutError) as exc:
        print(f"error: {exc or 'timed out'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
