"""``hmctl dns query``: ask a running node, over DNS over QUIC (default) or HTTP/3, with its key
pinned, and print the answer as ``dig`` does; through the SDK (``Mesh.query``).

Asking a node of this state, the command proves that node's own key in the handshake (the
controller holds it; a node never refuses its own key), so ``--verify`` reads the anchors
whatever the node's public InterfacePolicy grants strangers. A node named with ``--address`` is
asked anonymously."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from hypermesh.cli.common import peer_ref, state_dir
from hypermesh.cli.state import nodes_and_networks
from hypermesh.drivers.bootstrap import load_bootstrap
from hypermesh.errors import UsageError
from hypermesh.sdk.results import DnsResult
from hypermesh.sdk.sync import Mesh
from hypermesh.store import ResourceRecord
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity, held_identity, short_id

Server = tuple[PeerRef, str, Identity | None]
"""Where to ask (address and pinned node ID), its label, and the key to prove (None:
anonymous)."""


def server_of(args: argparse.Namespace) -> Server:
    """The node to ask, from --address (with --identity), --via or the state: the registry
    node first, else any running node."""
    if args.address:
        return peer_ref(args.address, args.identity), args.address, None
    directory = state_dir(args)
    nodes, networks = nodes_and_networks(directory, "name a node with --via, or --address")
    if args.via:
        record = nodes.get(args.via)
        if record is None:
            known = ", ".join(sorted(nodes)) or "none"
            raise UsageError(f"no node {args.via!r} in {directory} (nodes: {known})")
        return _address_of(record, directory)
    for network in networks:
        spec = (network.desired or {}).get("spec", {})
        name = spec.get("registry", {}).get("node")
        if name in nodes and nodes[name].status.get("address"):
            return _address_of(nodes[name], directory)
    for record in nodes.values():
        if record.status.get("address"):
            return _address_of(record, directory)
    raise UsageError(f"no running node in {directory}; start one with hmctl apply")


def _address_of(record: ResourceRecord, directory: Path) -> Server:
    address = record.status.get("address")
    if not address:
        raise UsageError(f"node {record.key.name!r} is not running (no address); hmctl apply")
    key = record.key
    node_dir = directory.joinpath("nodes", *([key.namespace] if key.namespace else []), key.name)
    label = f"node {record.key.name}"
    server = peer_ref(str(address), record.status.get("identity"))
    return server, label, held_identity(node_dir)


def _request(args: argparse.Namespace) -> dns.message.Message:
    try:
        rdtype = dns.rdatatype.from_text(args.type)
        return dns.message.make_query(
            args.name, rdtype, want_dnssec=args.dnssec, use_edns=0, payload=1232
        )
    except dns.exception.DNSException as exc:
        raise UsageError(f"cannot build a query for {args.name} {args.type}: {exc}") from exc


def query(args: argparse.Namespace) -> int:
    request = _request(args)
    server, label, key = server_of(args)
    transport = "DoH3" if args.doh else "DoQ"
    if args.doh:
        transport += " GET" if args.get else " POST"
    registry = (args.registry_id or registry_id_of(args)) if args.verify else None
    mesh = Mesh.of(key, timeout=args.timeout)
    started = time.perf_counter()
    result = mesh.query(
        request,
        via=server,
        transport=("doh3-get" if args.get else "doh3") if args.doh else "doq",
        verify=args.verify,
        anchor=registry,
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    verdict = _verdict(result, registry) if registry is not None else None
    identity = server.node_id
    shown = f"{server.address} ({label}{', ' + short_id(identity) + '…' if identity else ''})"
    if args.output == "json":
        data = _as_json(result.response, shown, transport, elapsed_ms, result.size)
        if args.verify:
            data["verified"] = result.verified
            data["verification"] = verdict
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(result.response.to_text() + "\n")
        print(f";; SERVER: {shown} via {transport}")
        print(f";; Query time: {elapsed_ms:.1f} ms")
        print(f";; MSG SIZE rcvd: {result.size}")
        if verdict is not None:
            print(f";; VERIFIED: {verdict}" if result.verified else f";; {verdict}")
    return 1 if verdict is not None and not result.verified else 0


def _verdict(result: DnsResult, registry: str) -> str:
    """``zone Z checked from the registry key R…`` or ``FAILED: …``."""
    if result.failure is not None:
        return f"FAILED: {result.failure}"
    return f"zone {result.zone} checked from the registry key {short_id(registry)}…"


def registry_id_of(args: argparse.Namespace) -> str:
    """The registry's node ID from the state: the Network's registry node (its key as it runs
    here, or, on another host, as its manifest pins it), the Network's registry identity, or
    for a public Network without a registry the bootstrap registry's key."""
    directory = state_dir(args)
    nodes, networks = nodes_and_networks(directory, "give --registry-id with --verify")
    for network in networks:
        registry = (network.desired or {}).get("spec", {}).get("registry", {})
        if registry.get("identity"):
            return str(registry["identity"])
        record = nodes.get(registry.get("node", ""))
        if record is None:
            continue
        pinned = (record.desired or {}).get("spec", {}).get("identity")
        if record.status.get("identity") or pinned:
            return str(record.status.get("identity") or pinned)
    for network in networks:
        spec = (network.desired or {}).get("spec", {})
        if spec.get("mode") == "public" and not spec.get("registry"):
            return load_bootstrap().identity  # the public registry's key ($HM_BOOTSTRAP)
    raise UsageError(f"no registry with a known key in {directory}: give --registry-id")


def _as_json(
    response: dns.message.Message, server: str, transport: str, ms: float, size: int
) -> dict[str, Any]:
    def section(rrsets: list[Any]) -> list[str]:
        return [line for rrset in rrsets for line in rrset.to_text().splitlines()]

    return {
        "rcode": dns.rcode.to_text(response.rcode()),
        "flags": dns.flags.to_text(response.flags).split(),
        "question": section(response.question),
        "answer": section(response.answer),
        "authority": section(response.authority),
        "additional": section(response.additional),
        "server": server,
        "transport": transport,
        "time_ms": round(ms, 3),
        "size": size,
    }
