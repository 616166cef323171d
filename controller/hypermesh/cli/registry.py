"""``hmctl registry …``: a registry's TLDs and its administration, through the SDK
(``hypermesh.sdk``), which speaks the registry's HTTP/3 API.

Administration (approve, reject, expire, reserve, unreserve, policy) is signed with the
registry's administrator key, which the registry node created next to its database
(``nodes/NAME/registry-admin/identity.key``, mode 0600); ``--admin-key`` names another file.
Renew and transfer are signed by the TLD's owner: a node of this state.

Every request proves a key in the handshake, so that the registry's gates know who asks: a
signed request its signer's; a read (list, revocations, policy) the administrator's key when
it is on this machine (the registry admits it as its operator, whatever its InterfacePolicy
says), else none.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from hypermesh.cli.common import peer_ref, state_dir
from hypermesh.cli.render import table
from hypermesh.errors import HyperMeshError, UsageError
from hypermesh.sdk.results import Refused
from hypermesh.sdk.sync import Mesh
from hypermesh.store import StateStore
from hypermesh.store.store import DB_FILE
from hypermesh.timefmt import rfc3339_epoch
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import (
    KEY_FILE,
    Identity,
    is_node_id,
    load_identity,
    short_id,
)

ADMIN_KEY = Path("registry-admin") / KEY_FILE
"""Where a registry node keeps its administrator key, under its node directory."""


@dataclass(frozen=True, slots=True)
class Target:
    """The registry to talk to, and what this state knows around it."""

    registry: PeerRef
    reader: Identity | None
    """The key that reads prove in the handshake: the administrator's, when on this machine."""
    timeout: float
    admin_key: Path | None
    """The administrator key file, when known."""
    node_ids: dict[str, str]
    """Node ID → node name, for the nodes of this state."""
    node_dirs: dict[str, Path]
    """Node name → its directory (its key)."""


Registries = dict[str, tuple[str, str | None]]
"""The registry nodes of a state: name → (address, node ID)."""


def _read_state(directory: Path) -> tuple[dict[str, str], dict[str, Path], Registries]:
    """The node IDs (→ names) and directories of the state's nodes, and its registry nodes."""
    node_ids: dict[str, str] = {}
    node_dirs: dict[str, Path] = {}
    registries: Registries = {}
    if not (directory / DB_FILE).exists():
        return node_ids, node_dirs, registries
    store = StateStore.open(directory)
    try:
        for record in store.records("Node"):
            name, status = record.key.name, record.status
            node_dirs[name] = directory / "nodes" / name
            if status.get("identity"):
                node_ids[str(status["identity"])] = name
            roles = (record.desired or {}).get("spec", {}).get("roles", [])
            if "registry" in roles:
                registries[name] = (str(status.get("address") or ""), status.get("identity"))
    finally:
        store.close()
    return node_ids, node_dirs, registries


def _registry_node(args: argparse.Namespace, registries: Registries, directory: Path) -> str:
    """The registry node named by ``--registry``, else the state's only one."""
    if args.registry:
        if args.registry not in registries:
            known = ", ".join(sorted(registries)) or "none"
            raise UsageError(f"no registry node {args.registry!r} in {directory} (have: {known})")
        return str(args.registry)
    if len(registries) == 1:
        return next(iter(registries))
    if not registries:
        raise UsageError(
            f"no registry node in {directory}: apply a Node with roles [registry], or name a "
            "remote one with --address and --identity"
        )
    raise UsageError(f"several registry nodes; pick one with --registry ({', '.join(registries)})")


def target_of(args: argparse.Namespace) -> Target:
    """The registry the options name (``--address``, ``--registry``, else the state's only
    one), and the keys this machine holds around it."""
    directory = state_dir(args)
    node_ids, node_dirs, registries = _read_state(directory)
    admin_key = Path(args.admin_key) if args.admin_key else None
    if args.address:
        reader = load_identity(admin_key) if admin_key else None
        registry = peer_ref(args.address, args.identity)
        return Target(registry, reader, args.timeout, admin_key, node_ids, node_dirs)
    name = _registry_node(args, registries, directory)
    address, identity = registries[name]
    if not address:
        raise UsageError(f"registry node {name!r} is not running; start it with hmctl apply")
    admin_key = admin_key or directory / "nodes" / name / ADMIN_KEY
    reader = load_identity(admin_key) if admin_key.exists() else None
    return Target(peer_ref(address, identity), reader, args.timeout, admin_key, node_ids, node_dirs)


T = TypeVar("T")


def ask(target: Target, operation: Callable[[Mesh], T], *, signer: Identity | None = None) -> T:
    """``operation`` on the SDK acting as ``signer`` (default: the reader's key, for reads);
    a refusal said as the registry's."""
    mesh = Mesh.of(signer or target.reader, registry=target.registry, timeout=target.timeout)
    try:
        return operation(mesh)
    except Refused as exc:
        raise HyperMeshError(f"the registry refused: {exc.reason}") from None


def _admin(target: Target) -> Identity:
    if target.admin_key is None:
        raise UsageError("name the registry's administrator key with --admin-key FILE")
    return load_identity(target.admin_key)


def _node_key(target: Target, name: str) -> Identity:
    node_dir = target.node_dirs.get(name)
    if node_dir is None:
        raise UsageError(f"no node {name!r} in this state; its key must be on this machine")
    return load_identity(node_dir / KEY_FILE)


def _owner_key(target: Target, tld: str, as_node: str | None) -> Identity:
    if as_node:
        return _node_key(target, as_node)
    owner = str(ask(target, lambda mesh: mesh.tld(tld)).get("owner", ""))
    name = target.node_ids.get(owner)
    if name is None:
        raise UsageError(
            f"{tld!r} belongs to {owner}, which is not a node of this state; sign as another "
            "node with --as NODE"
        )
    return _node_key(target, name)


def _owner(target: Target, node_id: str) -> str:
    name = target.node_ids.get(node_id)
    return f"{name} ({short_id(node_id)}…)" if name else f"{short_id(node_id)}…"


def _print_tld(args: argparse.Namespace, verb: str, info: dict[str, Any]) -> int:
    if args.output == "json":
        print(json.dumps(info, indent=2))
        return 0
    note = f" ({info['note']})" if info.get("note") else ""
    print(
        f"{verb} {info['name']}: {info['status']}{note}, serial {info['serial']}, "
        f"expires {str(info['expiresAt'])[:10]}"
    )
    return 0


def _print_policy(args: argparse.Namespace, verb: str, policy: dict[str, Any]) -> int:
    if args.output == "json":
        print(json.dumps(policy, indent=2))
        return 0
    if verb:
        print(verb)
    reserved = ", ".join(policy.get("reserved", [])) or "none"
    rows = [
        ("approval", policy.get("approval")),
        ("term", f"{policy.get('termDays')} days"),
        ("TLDs per owner key", f"at most {policy.get('maxTldsPerOwner')}"),
        ("reserved", reserved),
        ("administrator", policy.get("admin") or "none"),
    ]
    print(table(["SETTING", "VALUE"], rows), end="")
    return 0


# -- commands ----------------------------------------------------------------------------------


def list_tlds(args: argparse.Namespace) -> int:
    target = target_of(args)
    items = ask(target, Mesh.tlds)
    if args.output == "json":
        print(json.dumps({"items": items}, indent=2))
        return 0
    if not items:
        print("No TLDs registered.")
        return 0
    headers = ["NAME", "STATUS", "OWNER", "SERIAL", "EXPIRES", "NOTE"]
    rows = [
        [
            i["name"],
            i["status"],
            _owner(target, i["owner"]),
            i["serial"],
            str(i["expiresAt"])[:10],
            i.get("note", ""),
        ]
        for i in items
    ]
    if args.output == "wide":
        headers.append("DS")
        for row, item in zip(rows, items, strict=True):
            row.append(item.get("ds", []))
    print(table(headers, rows), end="")
    return 0


def approve(args: argparse.Namespace) -> int:
    target = target_of(args)
    info = ask(target, lambda mesh: mesh.approve_tld(args.tld), signer=_admin(target))
    return _print_tld(args, "approved", info)


def reject(args: argparse.Namespace) -> int:
    target = target_of(args)
    info = ask(
        target, partial(Mesh.reject_tld, tld=args.tld, reason=args.reason), signer=_admin(target)
    )
    return _print_tld(args, "rejected", info)


def expire(args: argparse.Namespace) -> int:
    target = target_of(args)
    info = ask(
        target, partial(Mesh.expire_tld, tld=args.tld, reason=args.reason), signer=_admin(target)
    )
    return _print_tld(args, "expired", info)


def reserve(args: argparse.Namespace) -> int:
    target = target_of(args)
    signer = _admin(target)
    for name in args.names:
        action = Mesh.unreserve_name if args.undo else Mesh.reserve_name
        policy = ask(target, partial(action, name=name), signer=signer)
    verb = f"{'un' if args.undo else ''}reserved {', '.join(args.names)}"
    return _print_policy(args, verb, policy)


def policy(args: argparse.Namespace) -> int:
    target = target_of(args)
    changes = {
        "approval": args.approval or None,
        "term_days": args.term_days,
        "max_tlds_per_owner": args.max_tlds_per_owner,
    }
    if all(value is None for value in changes.values()):
        return _print_policy(args, "", ask(target, Mesh.registry_policy))
    change = partial(Mesh.change_registry_policy, **changes)
    return _print_policy(args, "policy changed", ask(target, change, signer=_admin(target)))


def renew(args: argparse.Namespace) -> int:
    target = target_of(args)
    owner = _owner_key(target, args.tld, args.as_node)
    info = ask(target, lambda mesh: mesh.renew_tld(args.tld), signer=owner)
    return _print_tld(args, "renewed", info)


def transfer(args: argparse.Namespace) -> int:
    target = target_of(args)
    owner = _owner_key(target, args.tld, args.as_node)
    new_owner = _node_key(target, args.to)
    info = ask(target, lambda mesh: mesh.transfer_tld(args.tld, new_owner), signer=owner)
    return _print_tld(args, f"transferred to {args.to}:", info)


def revoke(args: argparse.Namespace) -> int:
    target = target_of(args)
    names = {name: node_id for node_id, name in target.node_ids.items()}
    if is_node_id(args.key):
        node_id, name = args.key, target.node_ids.get(args.key)
    elif args.key in names:
        node_id, name = names[args.key], args.key
    else:
        raise UsageError(f"{args.key!r} is neither a node of this state nor a node ID")
    if args.self_signed:
        if name is None:
            raise UsageError("--self needs a node of this state: its key signs")
        signer = _node_key(target, name)
    else:
        signer = _admin(target)
    data = ask(target, lambda mesh: mesh.revoke_key(node_id, reason=args.reason), signer=signer)
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"revoked {name or short_id(node_id)} ({node_id}): every node of the network refuses "
        "it once the revocation reaches it"
    )
    return 0


def revocations(args: argparse.Namespace) -> int:
    target = target_of(args)
    items = ask(target, Mesh.revocations)
    if args.output == "json":
        print(json.dumps({"items": items}, indent=2))
        return 0
    if not items:
        print("No keys revoked.")
        return 0
    rows = [
        [
            target.node_ids.get(i["nodeId"], short_id(i["nodeId"])),
            i["nodeId"],
            _when(float(i["revokedAt"])),
            "self" if i["signer"] == i["nodeId"] else _owner(target, i["signer"]),
            short_id(i["replacedBy"]) if i.get("replacedBy") else "",
            i.get("reason", ""),
        ]
        for i in items
    ]
    headers = ["NODE", "KEY", "REVOKED", "BY", "REPLACED-BY", "REASON"]
    print(table(headers, rows), end="")
    return 0


def _when(seconds: float) -> str:
    return rfc3339_epoch(seconds)
