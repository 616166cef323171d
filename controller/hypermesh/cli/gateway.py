"""``hmctl gateway``: browsers reach HyperMesh names through a local proxy and a local CA.

``trust`` makes the CA once per user (name-constrained to the HyperMesh TLDs) and installs it in
the user's NSS databases (Chromium, Firefox) and, with ``--system`` as root, the system store;
``untrust`` removes it from exactly there and deletes its key. ``run`` serves the proxy, ``pac``
prints the PAC file, ``status`` shows the CA, where it is installed and what the running
gateway counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hypermesh.cli.common import peer_ref, state_dir
from hypermesh.cli.render import table
from hypermesh.errors import HyperMeshError, UsageError
from hypermesh.files import write_atomic
from hypermesh.gateway.authority import Authority, check_tlds
from hypermesh.gateway.files import AuthorityFiles, default_directory
from hypermesh.gateway.pac import pac_file
from hypermesh.gateway.server import Gateway
from hypermesh.gateway.settings import DEFAULT_LISTEN, GatewaySettings
from hypermesh.gateway.truststores import (
    SYSTEM_DIRECTORY,
    install_nss,
    install_system,
    remove_place,
    system_file,
)
from hypermesh.gateway.upstream import Upstream
from hypermesh.sdk.mesh import Mesh
from hypermesh.timefmt import rfc3339

STATUS_TIMEOUT = 3.0


def _files(args: argparse.Namespace) -> AuthorityFiles:
    return AuthorityFiles(Path(args.ca_dir) if args.ca_dir else default_directory())


def _mesh(args: argparse.Namespace) -> Mesh:
    """The network to reach: ``--registry`` and ``--registry-id`` (no state needed: a laptop
    that runs no node), else the state's registry and, with ``--via``, that node."""
    if args.registry is not None:
        if args.registry_id is None:
            raise UsageError("--registry needs --registry-id (the registry's node ID, hm1…)")
        return Mesh(None, registry=peer_ref(args.registry, args.registry_id))
    return Mesh.from_state(state_dir(args), node=getattr(args, "via", None))


def _tlds_from_network(args: argparse.Namespace) -> tuple[str, ...]:
    """The active TLDs of the registry (``--tld`` not given)."""
    mesh = _mesh(args)
    if mesh.registry is None:
        raise UsageError("no registry known in the state: name the TLDs with --tld")

    async def ask() -> list[dict[str, Any]]:
        async with mesh:
            return await mesh.tlds()

    found = [str(t.get("name")) for t in asyncio.run(ask()) if t.get("status") == "active"]
    if not found:
        raise UsageError("the registry has no active TLD: name the TLDs with --tld")
    return check_tlds(found)


def trust(args: argparse.Namespace) -> int:
    """Make the CA when there is none, and install it."""
    files = _files(args)
    wanted = check_tlds(args.tld) if args.tld else None
    if files.exists():
        authority = files.load()
        if wanted is not None and wanted != authority.tlds:
            raise UsageError(
                f"the CA in {files.directory} is constrained to {', '.join(authority.tlds)}; "
                "a CA's constraints never change: `hmctl gateway untrust`, then trust again "
                "with the new --tld list"
            )
        made = False
    else:
        tlds = wanted or _tlds_from_network(args)
        authority = files.create(tlds, f"{getpass.getuser()}@{socket.gethostname()}")
        made = True
    places = (
        [] if args.no_nss else install_nss(Path.home(), files.certificate, authority.fingerprint)
    )
    if args.system:
        if os.geteuid() != 0:
            raise UsageError("--system writes the system's trust store: run it as root")
        path = system_file(SYSTEM_DIRECTORY, getpass.getuser())
        places.append(install_system(authority.pem, path))
    files.record_places(files.places() + places)
    print(f"{'created' if made else 'kept'} the CA in {files.directory} (key mode 0600)")
    _print_authority(authority, files.places())
    return 0


def untrust(args: argparse.Namespace) -> int:
    """Remove the CA from every place ``trust`` put it, then delete its files and key."""
    files = _files(args)
    if not files.exists():
        print(f"no CA in {files.directory}: nothing to remove")
        return 0
    fingerprint = files.load().fingerprint
    rows = []
    for place in files.places():
        rows.append((place["store"], remove_place(place, fingerprint)))
    gone = files.remove()
    if rows:
        sys.stdout.write(table(["STORE", "RESULT"], rows))
    print(f"deleted {len(gone)} files of the CA in {files.directory}, its key first")
    return 0


def pac(args: argparse.Namespace) -> int:
    """Print the PAC file for the CA's TLDs and the gateway's address."""
    authority = _files(args).load()
    sys.stdout.write(pac_file(authority.tlds, args.proxy or DEFAULT_LISTEN))
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve the proxy until interrupted."""
    files = _files(args)
    authority = files.load()
    settings = GatewaySettings(listen=args.listen, upstream_timeout=args.timeout)
    mesh = _mesh(args)
    mesh.timeout = args.timeout
    upstream = Upstream(mesh, route_ttl=settings.route_ttl, timeout=settings.upstream_timeout)
    gateway = Gateway(settings, authority, upstream, files.places())
    try:
        asyncio.run(_serve(gateway, files))
    finally:
        with contextlib.suppress(FileNotFoundError):
            files.running.unlink()
    return 0


async def _serve(gateway: Gateway, files: AuthorityFiles) -> None:
    try:
        address = await gateway.start()
    except OSError as exc:
        raise HyperMeshError(f"cannot listen on {gateway.settings.listen}: {exc}") from None
    running = {"listen": address, "pid": os.getpid()}
    write_atomic(files.running, json.dumps(running) + "\n", mode=0o600)
    print(f"gateway on {address} for {', '.join('.' + t for t in gateway.tlds)}", flush=True)
    print(f"PAC file: http://{address}/proxy.pac", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.close()


def status(args: argparse.Namespace) -> int:
    """The CA, where it is installed, and the running gateway's counts."""
    files = _files(args)
    authority = files.load()
    live = _live_status(args.gateway or _running_address(files))
    if args.output == "json":
        data = {
            "ca": _authority_json(authority, files.places()),
            "gateway": live,
        }
        print(json.dumps(data, indent=2))
        return 0
    _print_authority(authority, files.places())
    if live is None:
        print("\ngateway: not running (start it with `hmctl gateway run`)")
        return 0
    print(f"\ngateway: {live.get('listen')} (pid {live.get('pid')}, since {live.get('startedAt')})")
    counters = live.get("counters", {})
    rows = [(k, v) for k, v in counters.items() if not isinstance(v, dict)]
    rows += [(f"failed at {k}", v) for k, v in dict(counters.get("by_stage") or {}).items()]
    rows.append(("leaves issued", live.get("leavesIssued")))
    sys.stdout.write(table(["COUNTER", "VALUE"], rows))
    return 0


def _running_address(files: AuthorityFiles) -> str | None:
    data = files.read_json(files.running)
    return str(data["listen"]) if isinstance(data, dict) and "listen" in data else None


def _live_status(address: str | None) -> dict[str, Any] | None:
    """``/status.json`` of the gateway at ``address`` (never through a proxy), or None."""
    if address is None:
        return None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}/status.json", timeout=STATUS_TIMEOUT) as answer:
            data = json.loads(answer.read(1024 * 1024))
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _authority_json(authority: Authority, places: list[dict[str, str]]) -> dict[str, Any]:
    certificate = authority.certificate
    return {
        "subject": certificate.subject.rfc4514_string(),
        "fingerprint": authority.fingerprint,
        "notAfter": rfc3339(certificate.not_valid_after_utc),
        "permitted": list(authority.tlds),
        "installed": places,
    }


def _print_authority(authority: Authority, places: list[dict[str, str]]) -> None:
    info = _authority_json(authority, places)
    rows = [
        ("subject", info["subject"]),
        ("sha-256", info["fingerprint"]),
        ("not after", info["notAfter"]),
        ("may sign", ", ".join(f"*.{t}" for t in authority.tlds) + " (no IP addresses)"),
    ]
    sys.stdout.write(table(["CA", "VALUE"], rows))
    if places:
        sys.stdout.write(
            "\n" + table(["INSTALLED IN", "PATH"], [(p["store"], p["path"]) for p in places])
        )
