"""``hmctl message …``: signed, end-to-end encrypted messages between nodes of this state,
through the SDK (``hypermesh.sdk``)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from hypermesh.cli.common import state_dir
from hypermesh.cli.render import table
from hypermesh.cli.state import nodes_and_networks, running_node
from hypermesh.errors import UsageError
from hypermesh.sdk.mesh import Refused
from hypermesh.sdk.sync import Mesh
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import is_node_id, short_id


def _nodes(args: argparse.Namespace) -> dict[str, Any]:
    return nodes_and_networks(state_dir(args))[0]


def _mesh(args: argparse.Namespace, node: str) -> Mesh:
    """The SDK as ``node``: its key signs, its chain records."""
    running_node(_nodes(args), node)
    mesh = Mesh.from_state(state_dir(args), node=node)
    mesh.inner.timeout = args.timeout
    return mesh


def send(args: argparse.Namespace) -> int:
    mesh = _mesh(args, args.sender)
    to: PeerRef | str = args.to
    if not is_node_id(args.to):  # a node of this state; a node ID is found by the sender
        running_node(_nodes(args), args.to)
        to = mesh.peer(args.to)
    try:
        data = mesh.send(to, args.text)
    except Refused as exc:
        raise UsageError(f"node {args.sender}: {exc}") from None
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"message {data['id'][:12]}… delivered to {args.to}: "
        f"{args.sender}'s block {data['message']['seq']} records it, "
        f"{args.to}'s receipt is its block {data['receipt']['seq']}, "
        f"acknowledged in {args.sender}'s block {data['ack']['seq']}"
    )
    return 0


def inbox(args: argparse.Namespace) -> int:
    try:
        messages = _mesh(args, args.node).inbox(args.limit)
    except Refused as exc:
        raise UsageError(f"node {args.node}: {exc}") from None
    if args.output == "json":
        print(json.dumps(messages, indent=2))
        return 0
    names = {str(r.status.get("identity")): name for name, r in _nodes(args).items()}
    rows = [
        [
            datetime.datetime.fromtimestamp(m["sentMs"] / 1000, datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            names.get(m["from"], short_id(m["from"])),
            m["receiptBlock"]["seq"],
            m["text"],
        ]
        for m in messages
    ]
    if not rows:
        sys.stderr.write(f"no messages for {args.node}\n")
        return 0
    sys.stdout.write(table(["SENT", "FROM", "RECEIPT", "TEXT"], rows))
    return 0
