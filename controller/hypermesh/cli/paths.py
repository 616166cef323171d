"""``hmctl get paths [NODE]``: how each local node reaches its peers now.

Every running node of this state whose key is here (the local ones) is asked for ``GET
/paths/v1``, proving the node's own key, at once; its answer is checked field by field
(``hypermesh.sdk.paths``). Printed: a line per local node with its NAT kind, its reflexive
addresses and its home relay, then one table, a row per peer — direct or relayed, the address
pair, the relay, the round trip and since when. ``-o json``/``yaml`` print the answers as data.
Exit 0 when every local node answered, 1 when one could not be asked (the error names it), 2
when no local node runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hypermesh.cli.common import state_dir
from hypermesh.cli.render import age, error, table, to_json, to_yaml, use_colour
from hypermesh.errors import HyperMeshError, UsageError
from hypermesh.sdk.mesh import Mesh
from hypermesh.sdk.paths import HomeRelay, PathsView, PeerPath
from hypermesh.sdk.state import read_state
from hypermesh.transport.identity import short_id

__all__ = ["get_paths", "local_nodes", "render_headers", "render_rows"]

TIMEOUT = 10.0
"""How long one local node has to answer."""
EXIT_UNANSWERED = 1

HEADERS = ["NODE", "PEER", "PATH", "LOCAL", "REMOTE", "RELAY", "RTT", "SINCE"]
WIDE = ["PUNCH", "IDENTITY"]
_STYLE = {"direct": "green", "relayed": "yellow", "connecting": "dim"}


@dataclass(frozen=True, slots=True)
class Answer:
    """One local node's answer, or why there is none."""

    name: str
    view: PathsView | None
    error: str | None = None


def local_nodes(state: Path) -> dict[str, str]:
    """The running nodes of the state whose key is on this host: name → node ID."""
    directory, _ = read_state(state)
    return {
        name: node.node_id
        for name, node in sorted(directory.items())
        if node.node_id and (state / "nodes" / name / "identity.key").is_file()
    }


async def _ask(state: Path, name: str) -> Answer:
    """``GET /paths/v1`` at the local node ``name``, as that node's own key."""
    try:
        mesh = Mesh.from_state(state, node=name)
        mesh.timeout = TIMEOUT
        async with mesh:
            return Answer(name, await mesh.paths())
    except HyperMeshError as exc:
        return Answer(name, None, str(exc))


async def _ask_all(state: Path, names: Sequence[str]) -> list[Answer]:
    return list(await asyncio.gather(*(_ask(state, name) for name in names)))


def get_paths(args: argparse.Namespace) -> int:
    """Run ``hmctl get paths [NODE]``."""
    state = state_dir(args)
    try:
        local = local_nodes(state)
    except HyperMeshError as exc:
        raise UsageError(str(exc)) from None
    if args.name:
        if args.name not in local:
            known = ", ".join(local) or "none"
            raise UsageError(f"{args.name!r} is not a running node of this host (nodes: {known})")
        local = {args.name: local[args.name]}
    if not local:
        raise UsageError(f"no running node of this host in {state}: start nodes with hmctl apply")
    answers = asyncio.run(_ask_all(state, list(local)))
    names = {node_id: name for name, node_id in local.items()}
    for answer in answers:
        if answer.view is not None:
            names |= {p.node_id: p.name for p in answer.view.peers if p.name}
    _print(args.output, answers, names)
    failed = [a for a in answers if a.view is None]
    for answer in failed:
        error(f"{answer.name}: {answer.error}")
    sys.stdout.flush()
    return EXIT_UNANSWERED if failed else 0


def _print(output: str, answers: list[Answer], names: dict[str, str]) -> None:
    answered = [a for a in answers if a.view is not None]
    if output in ("json", "yaml"):
        items: list[dict[str, Any]] = [
            {"name": a.name} | a.view.to_json() for a in answered if a.view
        ]
        data: dict[str, Any] = {"items": items}
        if len(answered) < len(answers):
            data["errors"] = [{"name": a.name, "error": a.error} for a in answers if a.error]
        sys.stdout.write(to_json(data) + "\n" if output == "json" else to_yaml(data))
        return
    if output == "name":
        for a in answered:
            for peer in a.view.peers if a.view else ():
                print(f"{a.name}/{peer.name or peer.node_id}")
        return
    for line in render_headers(answered, names):
        print(line)
    wide = output == "wide"
    rows = render_rows(answered, names, wide=wide)
    headers = HEADERS + (WIDE if wide else [])
    if not rows:
        sys.stderr.write("no peers yet\n")
    elif use_colour(sys.stdout):
        _rich_table(headers, rows)
    else:
        sys.stdout.write(table(headers, rows))


def _name(node_id: str | None, names: dict[str, str]) -> str | None:
    """A node's name when known here, else its short ID."""
    if node_id is None:
        return None
    return names.get(node_id) or f"{short_id(node_id)}…"


def _relay_text(relay: HomeRelay, names: dict[str, str]) -> str:
    if relay.transport is None:
        return f"{_name(relay.node_id, names)} (connecting)"
    rtt = f", rtt {_rtt(relay.rtt_ms)}" if relay.rtt_ms is not None else ""
    return f"{_name(relay.node_id, names)} ({relay.transport} {relay.address}{rtt})"


def render_headers(answers: Sequence[Answer], names: dict[str, str]) -> list[str]:
    """A line per local node: ``# alpha: nat endpoint-independent, reflexive 203.0.113.7:4433,
    home relay relay1 (udp 198.18.0.1:4433, rtt 3.1 ms)``."""
    lines = []
    for answer in answers:
        view = answer.view
        if view is None:
            continue
        reflexive = ",".join(view.reflexive) or "<none>"
        relay = _relay_text(view.relay, names) if view.relay else "<none>"
        lines.append(f"# {answer.name}: nat {view.nat}, reflexive {reflexive}, home relay {relay}")
    return lines


def _rtt(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} ms"


def _remote(peer: PeerPath, home: HomeRelay | None) -> str | None:
    """Where the packets go: the peer's address, or on a relayed path the relay's address
    when it is the node's home relay (the node says ``relay <ID>``: the RELAY column has it)."""
    if peer.path != "relayed":
        return peer.remote
    if home is not None and peer.relay == home.node_id and home.address:
        return home.address
    return None if (peer.remote or "").startswith("relay ") else peer.remote


def _row(answer: Answer, peer: PeerPath, names: dict[str, str], wide: bool) -> list[Any]:
    row: list[Any] = [
        answer.name,
        peer.name or _name(peer.node_id, names),
        peer.path,
        peer.local,
        _remote(peer, answer.view.relay if answer.view else None),
        _name(peer.relay, names),
        _rtt(peer.rtt_ms),
        age(peer.since) if peer.since else None,
    ]
    if wide:
        punch = peer.punch
        last = f" {punch.last}" if punch.last else ""
        row += [f"{punch.successes}/{punch.attempts}{last}", peer.node_id]
    return row


def render_rows(answers: Sequence[Answer], names: dict[str, str], *, wide: bool) -> list[list[Any]]:
    """The table's rows: per local node, its peers sorted by name."""
    rows: list[list[Any]] = []
    for answer in answers:
        if answer.view is None:
            continue
        peers = sorted(answer.view.peers, key=lambda p: (p.name or "~", p.node_id))
        rows.extend(_row(answer, peer, names, wide) for peer in peers)
    return rows


def _rich_table(headers: list[str], rows: list[list[Any]]) -> None:
    """The table on a terminal: the path coloured (direct green, relayed yellow)."""
    grid = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for header in headers:
        grid.add_column(header, no_wrap=True)
    for row in rows:
        cells = [Text("<none>" if c is None or c == "" else str(c)) for c in row]
        cells[2].stylize(_STYLE.get(cells[2].plain, ""))  # Text: no markup from the node
        grid.add_row(*cells)
    Console(file=sys.stdout, highlight=False).print(grid)
