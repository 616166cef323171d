"""``hmctl dashboard``: open a network's live dashboard.

Every node serves its own dashboard (``hypermesh.node.dashboard``) at ``/dashboard/``; over
HTTP/1.1 on TCP where it has a web listener (a registry's node has one by default). A
registry's node sees the most of the network (every node's record, the TLDs and the pending
approvals), so ``hmctl dashboard`` picks it unless ``--node`` names another, prints its URL
and, with ``--open``, opens it in a browser.

What no node knows (whether the controller finds each node Ready, the policy probe's findings,
the controller's events) lives in hmctl's state store. ``--serve`` serves the same page on
127.0.0.1 with the node's view and the store's merged: one sampler, while somebody watches,
reads the node's ``/dashboard/state``, the store and every local node's paths to its peers
(as ``hmctl get paths`` does) at most once a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import urllib.request
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypermesh.cli.commands import open_store
from hypermesh.cli.common import state_dir
from hypermesh.cli.paths import local_nodes
from hypermesh.errors import HyperMeshError, UsageError
from hypermesh.node.dashboard import MAX_ITEMS, DashboardHub, add_dashboard_routes
from hypermesh.node.router import Router
from hypermesh.node.web import start_web
from hypermesh.sdk.mesh import Mesh
from hypermesh.store import ResourceRecord, StateStore
from hypermesh.timefmt import rfc3339

FETCH_TIMEOUT = 5.0
MAX_LOCAL = 50
"""Local nodes asked for their paths, at most."""
NO_WEB = (
    "no node of this state serves its pages over TCP: a registry's node does by default, "
    "others with spec.web.listen (for example 127.0.0.1:9464)"
)


def _spec(record: ResourceRecord) -> Mapping[str, Any]:
    spec = record.desired["spec"] if record.desired else record.applied or {}
    return spec if isinstance(spec, Mapping) else {}


def pick_node(records: list[ResourceRecord], name: str | None, network: str | None) -> str:
    """The web address of node ``name``, else of the registry's node, else of any node."""
    nodes = [r for r in records if r.key.kind == "Node"]
    if network is not None:
        nodes = [r for r in nodes if _spec(r).get("network") == network]
    if name is not None:
        nodes = [r for r in nodes if r.key.name == name]
        if not nodes:
            raise UsageError(f"--node: no Node {name!r} in this state")
    served = [r for r in nodes if isinstance(r.status.get("webAddress"), str)]
    served.sort(key=lambda r: ("registry" not in _spec(r).get("roles", ()), r.key.name))
    if not served:
        raise UsageError(NO_WEB if name is None else f"Node {name!r}: {NO_WEB}")
    return str(served[0].status["webAddress"])


def _ready(record: ResourceRecord) -> tuple[str, str, str]:
    conditions = record.status.get("conditions", [])
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            reason, message = condition.get("reason", ""), condition.get("message", "")
            return str(condition.get("status", "")), str(reason), str(message)
    return "Unknown", "", ""


def store_view(store: StateStore, network: str | None) -> dict[str, Any]:
    """What the state store adds: each Node as the controller sees it, the InterfacePolicies'
    findings (their Ready condition, which the live probe sets), the recent events."""
    nodes, policies = [], []
    for record in store.records()[: MAX_ITEMS * 4]:
        spec = _spec(record)
        if network is not None and spec.get("network") not in (None, network):
            continue
        status, reason, message = _ready(record)
        if record.key.kind == "Node":
            nodes.append(
                {
                    "name": record.key.name,
                    "host": str(spec.get("host", "") or record.status.get("address", "")),
                    "ready": status == "True",
                    "version": "",
                    "roles": ",".join(str(r) for r in spec.get("roles", ())),
                }
            )
        elif record.key.kind == "InterfacePolicy":
            policies.append(
                {"name": record.key.name, "status": status, "reason": reason, "message": message}
            )
    events = [
        {"at": rfc3339(e.at), "text": f"{e.key.kind}/{e.key.name}: {e.reason} {e.message}"}
        for e in store.events(limit=20)
    ]
    return {"controller_nodes": nodes, "policies": policies, "controller_events": events}


def _fetch(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:  # noqa: S310 - http only
        found: dict[str, Any] = json.loads(response.read())
        return found


async def _paths_of(state: Path, name: str) -> list[dict[str, Any]]:
    """Local node ``name``'s paths to its peers (``GET /paths/v1`` as its own key, as
    ``hmctl get paths`` asks), each named ``from`` it; none when it does not answer."""
    try:
        mesh = Mesh.from_state(state, node=name)
        mesh.timeout = FETCH_TIMEOUT
        async with mesh:
            view = await mesh.paths()
    except HyperMeshError:
        return []
    return [{"from": name} | peer.to_json() for peer in view.peers]


async def network_paths(state: Path) -> list[dict[str, Any]]:
    """Every local node's paths to its peers (the first ``MAX_LOCAL`` nodes)."""
    try:
        names = list(local_nodes(state))[:MAX_LOCAL]
    except HyperMeshError:
        return []
    found = await asyncio.gather(*(_paths_of(state, name) for name in names))
    return [peer for peers in found for peer in peers][:MAX_ITEMS]


async def serve(args: argparse.Namespace, node_url: str) -> None:
    """The merged dashboard on 127.0.0.1 until interrupted."""

    async def gather() -> dict[str, Any]:
        try:
            view = await asyncio.to_thread(_fetch, f"{node_url}/dashboard/state")
        except (OSError, ValueError) as exc:
            view = {"node": {"name": "?", "readiness": {"ready": False, "reason": str(exc)}}}
        view.pop("events", None)
        view.pop("at", None)
        view["network_paths"] = await network_paths(state_dir(args))
        store = open_store(args, create=False)
        if store is not None:
            try:
                view |= store_view(store, args.network)
            finally:
                store.close()
        return view

    hub = DashboardHub(gather)
    router = add_dashboard_routes(Router(), hub, lambda _: False)
    web = await start_web(f"127.0.0.1:{args.port}", router, h3_port=0)
    print(f"http://{web.address}/dashboard/  (the network through {node_url}; Ctrl-C stops)")
    sys.stdout.flush()
    if args.open:
        webbrowser.open(f"http://{web.address}/dashboard/")
    try:
        await asyncio.Event().wait()
    finally:
        web.close()


def dashboard(args: argparse.Namespace) -> int:
    store = open_store(args, create=False)
    if store is None:
        raise UsageError(f"no hmctl state in {state_dir(args)}: apply a network first")
    try:
        address = pick_node(store.records(), args.node, args.network)
    finally:
        store.close()
    node_url = f"http://{address}"
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args, node_url))
        return 0
    print(f"{node_url}/dashboard/")
    if args.open:
        webbrowser.open(f"{node_url}/dashboard/")
    return 0
