"""Revocation and rotation of node keys, end to end: a revoked key is refused by every node once
the revocation reaches it with the registry's anchors; a rotated key is recorded on the chain,
revoked in favour of its successor, and the node carries on under the new key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from hypermesh.chain.client import ChainClient
from hypermesh.chain.rotation import check_rotation
from hypermesh.chain.store import ChainStore
from hypermesh.errors import TransportError
from hypermesh.transport.client import h3_get
from hypermesh.transport.identity import Identity, load_identity
from tests import conftest as c
from tests.conftest import Hmctl, wait_for
from tests.e2e.conftest import items

NETWORK = c.documents(
    c.HEADER
    + "kind: Network\nmetadata: {name: demo}\nspec: {mode: private, registry: {node: registry}}\n",
    c.node("registry", roles="[registry]", interfaces="[public]"),
    c.node("alpha", roles="[mirror]", interfaces="[public, private]"),
    c.node("beta", roles="[mirror]", interfaces="[public, private]"),
)


def apply(hmctl: Hmctl, tmp_path: Path) -> dict[str, dict[str, Any]]:
    manifest = tmp_path / "network.yaml"
    manifest.write_text(NETWORK)
    result = hmctl("apply", "-f", str(manifest), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: item["status"] for name, item in items(hmctl, "nodes").items()}


def private_status(node: dict[str, Any], key: Identity) -> tuple[int, str]:
    async def run() -> tuple[int, str]:
        status, _, body = await h3_get(
            node["privateAddress"], "/status", expected_id=node["identity"], identity=key
        )
        return status, body.decode()

    try:
        return asyncio.run(run())
    except TransportError as exc:
        return 0, str(exc)


def test_a_revoked_key_is_refused_once_the_revocation_is_pushed(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    nodes = apply(hmctl, tmp_path)
    beta_key = load_identity(hmctl.state / "nodes" / "beta" / "identity.key")
    assert private_status(nodes["alpha"], beta_key)[0] == 200

    result = hmctl("registry", "revoke", "beta", "--reason", "laptop stolen")
    assert result.returncode == 0, result.stderr
    assert "revoked beta" in result.stdout
    # Pushed with the registry's anchors: alpha refuses beta's key within moments.
    refused = wait_for(lambda: (s := private_status(nodes["alpha"], beta_key))[0] == 403 and s)
    assert "revoked" in refused[1]  # type: ignore[index]
    listed = hmctl("registry", "revocations", "-o", "json")
    (entry,) = json.loads(listed.stdout)["items"]
    assert entry["nodeId"] == beta_key.node_id and entry["reason"] == "laptop stolen"
    # The revoked key signs nothing more at the registry.
    again = hmctl("registry", "revoke", "beta", "--self")
    assert again.returncode != 0 and "was revoked" in again.stderr
    # Other keys are not affected.
    alpha_key = load_identity(hmctl.state / "nodes" / "alpha" / "identity.key")
    assert private_status(nodes["beta"], alpha_key)[0] == 200
    # Only the administrator or the key itself may revoke.
    stranger = hmctl(
        "registry", "revoke", alpha_key.node_id, "--admin-key", str(_stranger(tmp_path))
    )
    assert stranger.returncode != 0 and "administrator" in stranger.stderr


def _stranger(tmp_path: Path) -> Path:
    from hypermesh.transport.identity import load_or_create_identity

    load_or_create_identity(tmp_path / "stranger")
    return tmp_path / "stranger" / "identity.key"


def test_a_rotated_key_is_recorded_on_the_chain_and_its_successor_takes_over(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    nodes = apply(hmctl, tmp_path)
    alpha_dir = hmctl.state / "nodes" / "alpha"
    old = load_identity(alpha_dir / "identity.key")
    result = hmctl("keys", "rotate", "alpha")
    assert result.returncode == 0, result.stdout + result.stderr
    new = load_identity(alpha_dir / "identity.key")
    assert new.node_id != old.node_id
    assert (alpha_dir / "identity.key").stat().st_mode & 0o777 == 0o600
    old_pem = old.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert not any(  # the old private key is gone from the node's directory
        old_pem in f.read_bytes() for f in alpha_dir.iterdir() if f.is_file()
    )
    assert not (alpha_dir / "identity.key.next").exists()

    # The old chain ends with the hand-over, signed by the old key with the new key's consent.
    retired = ChainStore.open(alpha_dir / f"chain-{old.node_id}.db", old)
    rotation = retired.head
    assert rotation is not None
    payload = retired.payload(rotation)
    retired.close()
    assert payload is not None
    assert check_rotation(rotation, payload) == (old.node_id, new.node_id)

    applied = apply(hmctl, tmp_path)
    alpha = applied["alpha"]
    assert alpha["identity"] == new.node_id
    # The new chain begins with a block linking to the rotation block.
    chain = ChainClient(alpha["address"], alpha["identity"], caller=None)
    first, first_payload = asyncio.run(chain.block(0))
    assert first.kind_name == "key" and json.loads(first_payload)["old"] == old.node_id
    assert [(link.seq, link.hash) for link in first.links] == [(rotation.seq, rotation.hash)]
    # The registry lists the old key as revoked in favour of the new one; beta refuses the
    # old key and admits the new one.
    revocations = json.loads(hmctl("registry", "revocations", "-o", "json").stdout)["items"]
    assert [(r["nodeId"], r["replacedBy"]) for r in revocations] == [(old.node_id, new.node_id)]
    assert wait_for(lambda: private_status(applied["beta"], old)[0] == 403)
    assert private_status(applied["beta"], new)[0] == 200
    assert nodes["alpha"]["identity"] == old.node_id
