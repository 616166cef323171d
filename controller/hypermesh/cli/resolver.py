"""``hmctl resolver``: the local validating stub resolver (``hypermesh.resolver``).

- ``run``: a stub in this process, asking a node of the state (``--via``) or one named by
  address and key, over DNS over QUIC, proving that node's own key when the state holds it;
- ``status``: what the stubs running here say of themselves (this command's, and every node's
  with ``spec.resolver``), from their status files; a table, or JSON;
- ``setup --print``: the lines that send HyperMesh names to a stub, for systemd-resolved,
  NetworkManager (its dnsmasq) or a plain resolv.conf.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hypermesh.cli.common import peer_ref, state_dir
from hypermesh.cli.dns import registry_id_of, server_of
from hypermesh.cli.render import table
from hypermesh.errors import UsageError
from hypermesh.node.lockfile import pid_alive
from hypermesh.resolver import (
    DoqSource,
    Resolver,
    Settings,
    Upstreams,
    read_status,
    running,
    system_upstreams,
)
from hypermesh.store import StateStore
from hypermesh.store.store import DB_FILE
from hypermesh.transport.address import parse_address

STATUS_FILE = Path("resolver") / "status.json"
"""``hmctl resolver run``'s status file in the state directory (unless ``--status-file``)."""
NODE_STATUS = "resolver.json"
"""A node's stub's status file in the node's directory."""
ALWAYS = ("_nodes",)
"""Zones every network's registry serves besides its TLDs (the node directory)."""


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (SIGINT or SIGTERM)."""
    for address in args.upstream or ():
        peer_ref(address, None)  # a bad address is the user's mistake, said at once
    try:
        parse_address(args.listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    if args.address and not args.registry_id:
        raise UsageError("with --address, give --registry-id (the registry's node ID)")
    server, label, key = server_of(args)
    registry = args.registry_id or registry_id_of(args)
    source = DoqSource(server, registry, identity=key, label=label)
    if args.upstream:
        upstreams = tuple(args.upstream)
    else:
        upstreams = system_upstreams(args.resolv_conf, args.listen)
    settings = Settings(listen=args.listen, forward=not args.no_forward)
    resolver = Resolver(settings, source, Upstreams(upstreams))
    path = Path(args.status_file) if args.status_file else state_dir(args) / STATUS_FILE
    asyncio.run(_serve(resolver, source, path))
    return 0


async def _serve(resolver: Resolver, source: DoqSource, path: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(resolver, path) as bound:
            forward = resolver.upstreams.addresses if resolver.settings.forward else ()
            print(
                f"resolver listening on {bound.address} (UDP and TCP): HyperMesh names from "
                f"{source.describe()}, verified; other names "
                + (f"to {', '.join(forward)}" if forward else "REFUSED"),
                flush=True,
            )
            if resolver.settings.forward and not forward:
                print("warning: no upstream resolver: other names get SERVFAIL", flush=True)
            await stop.wait()
    finally:
        await source.close()


def status(args: argparse.Namespace) -> int:
    found = _statuses(args)
    if args.output == "json":
        print(json.dumps({"items": [body for _, body in found]}, indent=2, sort_keys=True))
        return 0
    if not found:
        print("no resolver running (hmctl resolver run, or spec.resolver on a Node)")
        return 0
    rows = []
    for where, body in found:
        counts = body.get("counts", {})
        upstreams = body.get("upstreams") or []
        shown = (
            ", ".join(f"{u['address']}{'' if u.get('up') else ' (down)'}" for u in upstreams)
            if body.get("forward")
            else "off (REFUSED)"
        )
        rows.append(
            [
                where,
                body.get("listen", "?"),
                body.get("mesh", "?"),
                " ".join(body.get("zones") or []) or "-",
                shown or "none",
                counts.get("queries", 0),
                counts.get("verified", 0),
                counts.get("bogus", 0),
                counts.get("forwarded", 0),
                counts.get("refused", 0),
                counts.get("unreachable", 0),
                counts.get("cacheHits", 0),
                body.get("state", "running"),
            ]
        )
    headers = ["RESOLVER", "LISTEN", "ASKS", "ZONES", "UPSTREAMS", "QUERIES", "VERIFIED"]
    headers += ["BOGUS", "FORWARDED", "REFUSED", "UNREACHABLE", "CACHE-HITS", "STATE"]
    print(table(headers, rows))
    failures = [(where, body["lastFailure"]) for where, body in found if body.get("lastFailure")]
    for where, failure in failures:
        print(f"{where}: last failure: {failure}")
    return 0


def _statuses(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """(label, status) of every stub found: ``--status-file``, else this state's own and its
    nodes'."""
    if args.status_file:
        paths = [("hmctl resolver run", Path(args.status_file))]
    else:
        directory = state_dir(args)
        paths = [("hmctl resolver run", directory / STATUS_FILE)]
        paths += [
            (f"node {p.parent.name}", p) for p in sorted(directory.glob(f"nodes/*/{NODE_STATUS}"))
        ]
    found = []
    for label, path in paths:
        if not path.exists() and not args.status_file:
            continue
        body = read_status(path)
        body["resolver"] = label
        body["state"] = _state(body)
        found.append((label, body))
    return found


def _state(body: dict[str, Any]) -> str:
    pid = body.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "unknown"
    if not pid_alive(pid):
        return "stopped"
    updated = body.get("updatedAt")
    if isinstance(updated, int | float) and time.time() - updated > 3600:
        return "running (quiet for over an hour)"
    return "running"


def setup(args: argparse.Namespace) -> int:
    try:
        host, port = parse_address(args.listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    domains = _domains(args)
    sys.stdout.write(snippet(args.print, host, port, domains))
    return 0


def snippet(kind: str, host: str, port: int, domains: list[str]) -> str:
    """What sends ``domains`` to the stub at ``host``:``port``, for ``kind`` (resolved,
    networkmanager or resolv.conf)."""
    bracketed = f"[{host}]" if ":" in host else host
    if kind == "resolved":
        routing = " ".join(f"~{d}" for d in domains)
        return (
            "# /etc/systemd/resolved.conf.d/hypermesh.conf: HyperMesh names to the stub\n"
            "# (then: systemctl restart systemd-resolved; check: resolvectl status).\n"
            "# Per link instead: resolvectl dns IFACE "
            f"{bracketed}:{port}; resolvectl domain IFACE {routing}\n"
            "[Resolve]\n"
            f"DNS={bracketed}:{port}\n"
            f"Domains={routing}\n"
        )
    if kind == "networkmanager":
        servers = "".join(f"server=/{d}/{host}#{port}\n" for d in domains)
        return (
            "# /etc/NetworkManager/conf.d/hypermesh.conf: NetworkManager runs dnsmasq\n"
            "[main]\n"
            "dns=dnsmasq\n"
            "\n"
            "# /etc/NetworkManager/dnsmasq.d/hypermesh.conf: HyperMesh names to the stub\n"
            "# (then: systemctl reload NetworkManager)\n"
            f"{servers}"
        )
    if port != 53:
        raise UsageError(
            f"resolv.conf cannot name a port: the stub must listen on port 53, not {port} "
            "(hmctl resolver run --listen 127.0.0.53:53)"
        )
    return (
        "# /etc/resolv.conf: every name to the HyperMesh stub, which forwards the others\n"
        f"nameserver {host}\n"
        "options edns0 trust-ad\n"
    )


def _domains(args: argparse.Namespace) -> list[str]:
    if args.domain:
        return [d.strip(".").lower() for d in args.domain]
    directory = state_dir(args)
    if not (directory / DB_FILE).exists():
        raise UsageError(f"no state in {directory}: name the TLDs with --domain")
    store = StateStore.open(directory)
    try:
        tlds = sorted(r.key.name for r in store.records("TLD"))
    finally:
        store.close()
    if not tlds:
        raise UsageError(f"no TLD declared in {directory}: name the TLDs with --domain")
    return [*tlds, *ALWAYS]
