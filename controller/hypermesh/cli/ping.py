"""``hmctl ping NODE``: reach a node by its key and time round trips on one connection.

NODE is a node ID (found through the node directory: TXT ``<id>._nodes.`` at the resolving
node, else the registry), a node of this state, or a member name (the registry's directory).
The addresses of its record are tried with happy eyeballs; the one whose handshake first proves
the node's key is pinged (``Mesh.ping``). Exit 0 with the path and the round trips, 1 when the
node cannot be reached (the message says what was tried), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from hypermesh.cli.common import state_dir
from hypermesh.cli.render import error
from hypermesh.errors import HyperMeshError, UsageError
from hypermesh.sdk.mesh import Mesh
from hypermesh.sdk.results import PingResult
from hypermesh.sdk.sync import Mesh as SyncMesh
from hypermesh.transport.identity import short_id

EXIT_UNREACHABLE = 1


def ping(args: argparse.Namespace) -> int:
    """Run ``hmctl ping``: the mesh from the state (``--via``: that node resolves, and its key
    is proven), then ``count`` round trips to the node."""
    if not 1 <= args.count <= 1000:
        raise UsageError(f"-c/--count must be 1 to 1000, not {args.count}")
    inner = Mesh.from_state(state_dir(args), node=args.via)
    resolver = args.via
    if resolver is None and inner.registry is None and inner.directory:
        # The registry is on another host: a node of this host looks the key up.
        resolver = sorted(inner.directory)[0]
        inner = Mesh.from_state(state_dir(args), node=resolver)
    inner.timeout = args.timeout
    mesh = SyncMesh(inner)
    via = inner.node if resolver else None
    try:
        result = mesh.ping(args.node, args.count, via=via)
    except HyperMeshError as exc:
        error(f"{args.node} is unreachable: {exc}")
        return EXIT_UNREACHABLE
    if args.output == "json":
        print(json.dumps(result.to_json()))
    else:
        print(describe(result))
    sys.stdout.flush()
    return 0


def describe(result: PingResult) -> str:
    """One line: ``gamma (hm1abc…): direct 198.18.1.3:4433  rtt min/avg/max 0.41/0.52/0.70
    ms``."""
    who = f"{result.name} ({short_id(result.node_id)}…)" if result.name else result.node_id
    rtt = f"{result.rtt_min:.2f}/{result.rtt_avg:.2f}/{result.rtt_max:.2f}"
    return (
        f"{who}: {result.path} {result.address}  rtt min/avg/max {rtt} ms"
        f"  ({len(result.rtt_ms)} requests, handshake {result.handshake_ms:.1f} ms)"
    )
