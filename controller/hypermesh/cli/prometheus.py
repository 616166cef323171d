"""``hmctl prometheus sd``: Prometheus file-based service discovery from hmctl's state.

Each node serves ``GET /metrics`` over HTTP/3 on its QUIC endpoint and, when it has a web
listener (``spec.web.listen``; a registry gets one by default), over HTTP/1.1 on TCP, which is
what Prometheus scrapes. The targets are the web addresses the nodes reported
(``status.webAddress`` in the state store, as ``hmctl get nodes -o yaml`` shows them), one group
per node labelled with its network, node, host and roles. Nodes without a web listener are
named on stderr with what to add. The file is replaced atomically, so a Prometheus watching it
never reads half of one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hypermesh.cli.commands import open_store
from hypermesh.cli.common import state_dir
from hypermesh.errors import UsageError
from hypermesh.files import write_atomic
from hypermesh.store import ResourceRecord

WEB_HINT = (
    "Prometheus scrapes a node over HTTP/1.1 on TCP, which it serves only with a web listener: "
    "set spec.web.listen (for example 127.0.0.1:9464) on the Nodes to scrape"
)


def target_groups(
    records: Iterable[ResourceRecord], network: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The file_sd groups for the Nodes among ``records`` (of ``network`` only, when given),
    and the names of the nodes left out because they serve no web listener."""
    groups: list[dict[str, Any]] = []
    unscrapable: list[str] = []
    for record in sorted(records, key=lambda r: (r.key.namespace or "", r.key.name)):
        if record.key.kind != "Node":
            continue
        spec: Mapping[str, Any] = record.desired["spec"] if record.desired else record.applied or {}
        node_network = str(spec.get("network", ""))
        if network is not None and node_network != network:
            continue
        address = record.status.get("webAddress")
        if not isinstance(address, str) or not address:
            unscrapable.append(record.key.name)
            continue
        roles = spec.get("roles", [])
        labels = {
            "network": node_network,
            "node": record.key.name,
            "host": str(spec.get("host", "")),
            "roles": ",".join(str(r) for r in roles) if isinstance(roles, list) else "",
        }
        groups.append({"targets": [address], "labels": labels})
    return groups, unscrapable


def sd(args: argparse.Namespace) -> int:
    store = open_store(args, create=False)
    if store is None:
        raise UsageError(f"no hmctl state in {state_dir(args)}: apply a network first")
    try:
        groups, unscrapable = target_groups(store.records(), args.network)
    finally:
        store.close()
    if args.network is not None and not groups and not unscrapable:
        raise UsageError(f"--network: no Nodes of network {args.network!r} in {state_dir(args)}")
    text = json.dumps(groups, indent=2) + "\n"
    if args.output_file in (None, "-"):
        sys.stdout.write(text)
    else:
        write_atomic(Path(args.output_file), text)
        print(f"{len(groups)} targets written to {args.output_file}", file=sys.stderr)
    if unscrapable:
        print(
            f"left out (no web listener): {', '.join(unscrapable)}. {WEB_HINT}",
            file=sys.stderr,
        )
    return 0
