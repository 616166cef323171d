"""``hmctl keys rotate``: give a node a new key, recorded on its chain, the old one revoked.
``hmctl keys show``: a node's ID, for pinning it in ``spec.identity`` on other hosts."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import time
from functools import partial
from pathlib import Path

from hypermesh.chain.rotation import rotation_payload
from hypermesh.cli import registry as registry_cli
from hypermesh.cli.common import peer_ref, state_dir
from hypermesh.cli.state import nodes_and_networks, running_node
from hypermesh.errors import HyperMeshError, UsageError
from hypermesh.files import write_atomic
from hypermesh.node.features.chain import CHAIN_DB
from hypermesh.node.lockfile import AlreadyRunning, NodeLock, running_pid
from hypermesh.node.rotation import NEXT_KEY, ROTATION_FILE, finish_rotation, read_rotation
from hypermesh.node.tls_tcp import spki_pin
from hypermesh.sdk.sync import Mesh
from hypermesh.transport.identity import (
    KEY_FILE,
    Identity,
    create_key_file,
    load_identity,
    load_or_create_identity,
    short_id,
)

STOP_TIMEOUT = 10.0


def rotate(args: argparse.Namespace) -> int:
    directory = state_dir(args)
    nodes, _ = nodes_and_networks(directory)
    address, node_id = running_node(nodes, args.node)
    node_dir = directory / "nodes" / args.node
    if read_rotation(node_dir) is not None:
        raise UsageError(
            f"a rotation of {args.node} is already under way ({node_dir / ROTATION_FILE}); "
            "hmctl apply starts the node, which finishes it"
        )
    old = load_identity(node_dir / KEY_FILE)
    if old.node_id != node_id:
        raise UsageError(
            f"node {args.node} runs as {node_id} but its key file holds {old.node_id}; "
            "run hmctl apply first"
        )
    new = create_key_file(node_dir / NEXT_KEY)
    # 1. The old key records the hand-over on its chain, with the new key's consent.
    payload = rotation_payload(old, new, int(time.time() * 1000))
    mesh = Mesh.of(old, node=peer_ref(address, node_id), timeout=args.timeout)
    try:
        block = mesh.append(payload, kind="key")
    except HyperMeshError as exc:
        (node_dir / NEXT_KEY).unlink(missing_ok=True)
        raise HyperMeshError(f"node {args.node}: the rotation was not recorded: {exc}") from None
    # 2. The old key revokes itself at the registry, naming its successor.
    revoked = _revoke(args, old, new.node_id)
    write_atomic(
        node_dir / ROTATION_FILE,
        json.dumps(
            {"old": old.node_id, "new": new.node_id, "seq": block.seq, "hash": block.hash.hex()}
        ),
    )
    # 3. Stop the node and put the new key in place under its lock.
    _stop(node_dir)
    try:
        lock = NodeLock.acquire(node_dir, timeout=2.0)
    except AlreadyRunning:
        pass  # a controller loop restarted it already; the node finished the rotation itself
    else:
        try:
            finish_rotation(node_dir, CHAIN_DB)
        finally:
            lock.release()
    print(
        f"node {args.node}: key rotated {short_id(old.node_id)} → {short_id(new.node_id)}; "
        f"block {block.seq} of the old key's chain records it (kept in chain-{old.node_id}.db)"
    )
    print(
        "the old key is revoked at the registry, replaced by the new one"
        if revoked
        else "no registry in this state: the old key is not revoked anywhere"
    )
    print("the node is stopped: hmctl apply starts it with the new key and tells the others")
    return 0


def _revoke(args: argparse.Namespace, old: Identity, new_id: str) -> bool:
    try:
        target = registry_cli.target_of(args)
    except UsageError:
        return False
    revoke = partial(Mesh.revoke_key, node_id=old.node_id, reason="rotated", replaced_by=new_id)
    registry_cli.ask(target, revoke, signer=old)
    return True


def _stop(path: Path) -> None:
    pid = running_pid(path)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while running_pid(path) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    if running_pid(path) is not None:
        raise HyperMeshError(f"{path}: the node did not stop within {STOP_TIMEOUT:g}s")


def show(args: argparse.Namespace) -> int:
    """``hmctl keys show NODE``: the node's ID, to pin in ``spec.identity`` on other hosts
    (with ``-o json``, also the pin DNS-over-TLS clients use: ``spkiPin``).
    The key is made (0600) when the node has none yet, so a node can be pinned before it is
    first started; nothing else is touched."""
    name, namespace = str(args.node), str(args.namespace or "")
    if not _LABELS.match(name) or (namespace and not _LABELS.match(namespace)):
        raise UsageError(f"not a node name: {name!r} (a DNS name: a-z, 0-9, '-', '.')")
    node_dir = state_dir(args).joinpath("nodes", *([namespace, name] if namespace else [name]))
    created = not (node_dir / KEY_FILE).exists()
    identity = load_or_create_identity(node_dir)
    if args.output == "json":
        info = {
            "node": name,
            "namespace": namespace or None,
            "identity": identity.node_id,
            "spkiPin": spki_pin(identity.node_id),
            "keyFile": str(node_dir / KEY_FILE),
            "created": created,
        }
        print(json.dumps(info, indent=2))
        return 0
    print(identity.node_id)
    return 0


_LABELS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
