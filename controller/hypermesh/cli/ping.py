"""``hmctl ping NODE``: reach a node by its key, time round trips, and say which path they took.

NODE is a node ID (found through the node directory: TXT ``<id>._nodes.`` at the resolving
node, else the registry), a node of this state, or a member name (the registry's directory).
When a node of this host runs, it pings (``POST /paths/v1/ping``, proving its own key): on its
direct path to NODE, or through a relay when no direct path exists (yet), and the line says
which — ``direct ADDRESS``, ``relayed via RELAY (over udp|tcp)``, ``upgraded to direct`` when
the path moved during the ping. Without one (or when it cannot), this process dials NODE
itself: the addresses of its record with happy eyeballs, the first handshake that proves the
node's key is pinged (``Mesh.ping``), and the path is direct. Exit 0 with the path and the
round trips, 1 when the node cannot be reached (the message says what was tried), 2 on bad
input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hypermesh.cli.common import state_dir
from hypermesh.cli.paths import local_nodes
from hypermesh.cli.render import error
from hypermesh.errors import HyperMeshError, UsageError
from hypermesh.sdk.mesh import Mesh
from hypermesh.sdk.results import PingResult
from hypermesh.sdk.sync import Mesh as SyncMesh
from hypermesh.transport.identity import short_id

EXIT_UNREACHABLE = 1


def ping(args: argparse.Namespace) -> int:
    """Run ``hmctl ping``: a local node pings when one runs (``--via``, else the first other
    than the target), and says which path it took; else (or when it cannot) this process
    pings, directly, from the mesh of the state (``--via``: that node resolves, and its key
    is proven)."""
    if not 1 <= args.count <= 1000:
        raise UsageError(f"-c/--count must be 1 to 1000, not {args.count}")
    state = state_dir(args)
    failures: list[str] = []
    pinger = _pinger(args, local_nodes(state))
    if pinger is not None:
        inner = Mesh.from_state(state, node=pinger)
        inner.timeout = args.timeout
        try:
            result = SyncMesh(inner).ping(args.node, args.count, from_node=True)
            return _show(args, result, _names(inner))
        except HyperMeshError as exc:
            failures.append(f"from {pinger}: {exc}")
    try:
        result = _ping_here(args, state)
    except HyperMeshError as exc:
        failures.append(f"from this host: {exc}" if failures else str(exc))
        error(f"{args.node} is unreachable: {'; '.join(failures)}")
        return EXIT_UNREACHABLE
    return _show(args, result, {})


def _pinger(args: argparse.Namespace, local: dict[str, str]) -> str | None:
    """The local node that pings: ``--via``, else the first that is not the target."""
    if args.via is not None:
        return str(args.via) if args.via in local else None
    others = [n for n, node_id in local.items() if args.node not in (n, node_id)]
    return others[0] if others else None


def _ping_here(args: argparse.Namespace, state: Path) -> PingResult:
    """This process pings, directly (the path is direct: one QUIC connection from here)."""
    inner = Mesh.from_state(state, node=args.via)
    resolver = args.via
    if resolver is None and inner.registry is None and inner.directory:
        # The registry is on another host: a node of this host looks the key up.
        resolver = sorted(inner.directory)[0]
        inner = Mesh.from_state(state, node=resolver)
    inner.timeout = args.timeout
    via = inner.node if resolver else None
    return SyncMesh(inner).ping(args.node, args.count, via=via, from_node=False)


def _names(mesh: Mesh) -> dict[str, str]:
    """Names of the nodes this state knows, by node ID (for the relay)."""
    return {node.node_id: name for name, node in mesh.directory.items() if node.node_id}


def _show(args: argparse.Namespace, result: PingResult, names: dict[str, str]) -> int:
    if args.output == "json":
        print(json.dumps(result.to_json()))
    else:
        print(describe(result, names))
    sys.stdout.flush()
    return 0


def describe(result: PingResult, names: dict[str, str] | None = None) -> str:
    """One line: ``gamma (hm1abc…): direct 198.18.1.3:4433  rtt min/avg/max 0.41/0.52/0.70
    ms  (3 requests from alpha at 198.18.1.2:4433)``; relayed: ``… relayed via relay1 (over
    tcp)  rtt …``; from this host: ``(3 requests, handshake 2.1 ms)``."""
    names = names or {}
    who = f"{result.name} ({short_id(result.node_id)}…)" if result.name else result.node_id
    rtt = f"{result.rtt_min:.2f}/{result.rtt_avg:.2f}/{result.rtt_max:.2f}"
    if result.path == "relayed" and result.relay:
        relay = names.get(result.relay) or f"{short_id(result.relay)}…"
        over = f" (over {result.relay_transport})" if result.relay_transport else ""
        path = f"relayed via {relay}{over}"
    else:
        path = f"{result.path} {result.address}"
    count = f"{len(result.rtt_ms)} requests"
    if result.via is None:
        handshake = f"handshake {result.handshake_ms:.1f} ms"
        return f"{who}: {path}  rtt min/avg/max {rtt} ms  ({count}, {handshake})"
    pinger = names.get(result.via) or f"{short_id(result.via)}…"
    at = f" at {result.local}" if result.local else ""
    upgraded = "; upgraded to direct" if result.upgraded else ""
    return f"{who}: {path}  rtt min/avg/max {rtt} ms  ({count} from {pinger}{at}{upgraded})"
