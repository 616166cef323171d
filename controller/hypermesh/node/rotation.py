"""Finishing a key rotation in a node's directory, under the node's lock.

``hmctl keys rotate`` records the rotation on the node's chain with the old key, revokes the
old key at the registry, then leaves two files in the node's directory:

    identity.key.next   the new key (0600)
    rotation.json       {"old": …, "new": …, "seq": N, "hash": "…"}: the rotation block

``finish_rotation`` (run by the command once the node has stopped, or by the node itself when
it starts first) puts the new key in place and retires the old key's chain database to
``chain-<old node ID>.db``; ``start_successor_chain`` then begins the new key's chain with a
block that links to the rotation block, and removes ``rotation.json``. Both are idempotent.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypermesh.chain.rotation import KEY, successor
from hypermesh.chain.store import ChainStore
from hypermesh.errors import HyperMeshError
from hypermesh.transport.identity import KEY_FILE, install_key, load_identity

NEXT_KEY = "identity.key.next"
ROTATION_FILE = "rotation.json"


def read_rotation(node_dir: Path) -> dict[str, Any] | None:
    """The pending rotation of ``node_dir``, or None."""
    try:
        data = json.loads((node_dir / ROTATION_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HyperMeshError(f"{node_dir / ROTATION_FILE}: unreadable: {exc}") from None
    if not isinstance(data, dict) or not {"old", "new", "seq", "hash"} <= data.keys():
        raise HyperMeshError(f"{node_dir / ROTATION_FILE}: not a rotation record")
    return data


def finish_rotation(node_dir: Path, chain_file: str) -> bool:
    """Install the next key if one waits; returns whether it did. The caller holds the lock."""
    rotation = read_rotation(node_dir)
    next_key = node_dir / NEXT_KEY
    if rotation is None or not next_key.exists():
        return False
    current = load_identity(node_dir / KEY_FILE)
    if current.node_id != rotation["old"]:
        raise HyperMeshError(
            f"{node_dir}: the key is {current.node_id}, but the pending rotation retires "
            f"{rotation['old']}; remove {NEXT_KEY} and {ROTATION_FILE} to abandon it"
        )
    retired = f"chain-{rotation['old']}.db"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (node_dir / (chain_file + suffix)).replace(node_dir / (retired + suffix))
    installed = install_key(node_dir, next_key)
    if installed.node_id != rotation["new"]:
        raise HyperMeshError(f"{node_dir}: {NEXT_KEY} is not the key the rotation names")
    return True


def start_successor_chain(node_dir: Path, chain: ChainStore) -> bool:
    """Begin the new key's chain with its link to the rotation block, once; returns whether
    it appended."""
    rotation = read_rotation(node_dir)
    if rotation is None or (node_dir / NEXT_KEY).exists():
        return False
    if chain.identity.node_id != rotation["new"]:
        return False
    if chain.size == 0:
        payload, link = successor(
            str(rotation["old"]), int(rotation["seq"]), bytes.fromhex(str(rotation["hash"]))
        )
        chain.append(KEY, payload, (link,))
    (node_dir / ROTATION_FILE).unlink()
    return True
