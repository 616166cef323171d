"""``hmctl tunnel request``: a request to a node's services through an anonymous tunnel."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

from hypermesh.cli.common import state_dir
from hypermesh.cli.state import nodes_and_networks, running_node
from hypermesh.errors import UsageError
from hypermesh.sdk.mesh import Mesh
from hypermesh.store import ResourceRecord
from hypermesh.tunnel.client import MIN_RELAYS, TunnelFailed, TunnelResponse


def _spec(record: ResourceRecord) -> dict[str, Any]:
    return dict((record.desired or {}).get("spec", {}))


def _ephemeral(nodes: dict[str, ResourceRecord], name: str) -> tuple[str, str]:
    return running_node(nodes, name, "ephemeral")


def choose_path(
    nodes: dict[str, ResourceRecord], destination: str, via: list[str] | None, hops: int
) -> list[str]:
    """The relays to go through: ``via`` as given, else ``hops`` relays of the destination's
    network picked at random."""
    network = _spec(nodes[destination]).get("network") if destination in nodes else None
    if via:
        for name in via:
            _ephemeral(nodes, name)
            if name == destination:
                raise UsageError(f"{name} is the destination; it cannot also be a relay")
        if len(set(via)) != len(via):
            raise UsageError("a relay appears twice in --via")
        if len(via) < MIN_RELAYS:
            raise UsageError(
                f"--via names {len(via)} relay(s); a tunnel goes through at least "
                f"{MIN_RELAYS}, so that no single relay learns both ends"
            )
        return via
    relays = [
        name
        for name, record in sorted(nodes.items())
        if name != destination
        and "relay" in _spec(record).get("roles", ())
        and _spec(record).get("network") == network
        and record.status.get("ephemeralAddress")
    ]
    if len(relays) < hops:
        raise UsageError(
            f"--hops {hops} needs {hops} running relays in network {network}; "
            f"found {len(relays)} ({', '.join(relays) or 'none'})"
        )
    return random.SystemRandom().sample(relays, hops)


def request(args: argparse.Namespace) -> int:
    if args.hops < MIN_RELAYS and not args.via:
        raise UsageError(
            f"--hops must be at least {MIN_RELAYS}: no single relay may learn both ends"
        )
    nodes, _ = nodes_and_networks(state_dir(args))
    _ephemeral(nodes, args.node)
    via = [v for v in args.via.split(",") if v] if args.via else None
    path = choose_path(nodes, args.node, via, args.hops)
    body = _body(args.data)
    try:
        answer = asyncio.run(
            asyncio.wait_for(_send(state_dir(args), path, args, body), args.timeout)
        )
    except TimeoutError:
        raise TunnelFailed(
            f"no answer through {' → '.join([*path, args.node])} within {args.timeout:g}s"
        ) from None
    route = " → ".join([*path, args.node])
    if args.output == "json":
        try:
            decoded: Any = answer.json()
        except ValueError:
            decoded = answer.body.decode("utf-8", "replace")
        print(json.dumps({"path": [*path, args.node], "status": answer.status, "body": decoded}))
    else:
        sys.stderr.write(f"through {route}: {answer.status}\n")
        sys.stdout.write(answer.body.decode("utf-8", "replace"))
        if answer.body and not answer.body.endswith(b"\n"):
            sys.stdout.write("\n")
    return 0 if answer.status < 400 else 1


async def _send(
    state: Path, relays: list[str], args: argparse.Namespace, body: bytes
) -> TunnelResponse:
    """Through the SDK, which asks every ephemeral node for its card (so the asking does not
    single out the destination)."""
    async with Mesh.from_state(state) as mesh:
        tunnel = await mesh.tunnel(
            mesh.peer(args.node), [mesh.peer(r) for r in relays], ttl=args.ttl
        )
        async with tunnel:
            return await tunnel.request(
                args.method.upper(),
                args.path,
                body=body,
                headers=[("content-type", "application/json")] if body else [],
            )


def _body(data: str | None) -> bytes:
    if data is None:
        return b""
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            raise UsageError(f"--data {data}: {exc}") from None
    return data.encode()
