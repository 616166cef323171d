"""``hmctl message …``: signed, end-to-end encrypted messages between nodes of this state."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import Any

from hypermesh.cli.common import state_dir
from hypermesh.cli.render import table
from hypermesh.cli.state import nodes_and_networks, running_node
from hypermesh.errors import UsageError
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.identity import load_or_create_identity, short_id


def _nodes(args: argparse.Namespace) -> dict[str, Any]:
    return nodes_and_networks(state_dir(args))[0]


def _call(args: argparse.Namespace, node: str, method: str, path: str, body: Any = None) -> Any:
    nodes = _nodes(args)
    address, identity = running_node(nodes, node)
    signer = load_or_create_identity(state_dir(args) / "nodes" / node)
    client = RegistryClient(address, identity, timeout=args.timeout, label=f"node {node}")
    status, data = asyncio.run(client.call(method, path, body, signer=signer))
    if status not in (200, 201):
        raise UsageError(f"node {node}: {status}: {data.get('error', data)}")
    return data


def send(args: argparse.Namespace) -> int:
    nodes = _nodes(args)
    address, identity = running_node(nodes, args.to)
    data = _call(
        args,
        args.sender,
        "POST",
        "/message/v1/send",
        {"to": identity, "address": address, "text": args.text},
    )
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
    data = _call(args, args.node, "GET", f"/message/v1/inbox?limit={args.limit}")
    messages = data.get("messages", [])
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
