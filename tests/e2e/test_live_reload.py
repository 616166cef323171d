"""Adding a node to a network restarts no other node: `hmctl apply` writes the others' new
configs and they reload them in place (SIGHUP), keeping their pids, and their private
interfaces admit the new member at once; a removed member is refused after the reload; a node
whose own spec changed is restarted; a config that does not parse leaves a node running the
one it had."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from hypermesh.transport.client import connect_h3, h3_get_json
from hypermesh.transport.identity import Identity, load_identity, load_or_create_identity
from tests import conftest as c
from tests.conftest import Hmctl
from tests.e2e import test_federation as federation
from tests.e2e.conftest import items

NODES = ("n1", "n2", "n3")
INTERFACES = "[public, private]"


def manifests(folder: Path, *nodes: str, tagged: str | None = None) -> None:
    docs = [c.network()]
    for name in nodes:
        extra = {"tags": "[changed]"} if name == tagged else {}
        docs.append(c.node(name, interfaces=INTERFACES, **extra))
    (folder / "net.yaml").write_text(c.documents(*docs))


def apply(hmctl: Hmctl, folder: Path, *flags: str) -> dict[str, dict[str, Any]]:
    args = flags if "-f" in flags else ("-f", str(folder), *flags)
    result = hmctl("apply", *args, "--timeout", "90s")
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: item["status"] for name, item in items(hmctl, "nodes").items()}


async def private_status(node: dict[str, Any], key: Identity) -> int:
    async with (
        asyncio.timeout(10),
        connect_h3(node["privateAddress"], expected_id=node["identity"], identity=key) as h3,
    ):
        status, _, _ = await h3.request("GET", "/status", body=b"")
    return status


def status_of(node: dict[str, Any], key: Identity) -> dict[str, Any]:
    return asyncio.run(
        h3_get_json(node["address"], "/status", expected_id=node["identity"], identity=key)
    )


def test_a_new_member_reloads_the_others_and_a_removed_one_is_refused(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    folder = tmp_path / "net"
    folder.mkdir()
    manifests(folder, *NODES)
    before = apply(hmctl, folder)
    pids = {name: before[name]["pid"] for name in NODES}
    # The fourth node's key exists before it is declared: the others do not know it yet.
    newcomer = load_or_create_identity(hmctl.state / "nodes" / "n4")
    assert asyncio.run(private_status(before["n1"], newcomer)) == 403

    manifests(folder, *NODES, "n4", tagged="n3")  # n3's own spec changes too
    after = apply(hmctl, folder)
    assert after["n4"]["identity"] == newcomer.node_id
    assert {name: after[name]["pid"] for name in ("n1", "n2")} == {
        "n1": pids["n1"],
        "n2": pids["n2"],
    }  # reloaded in place
    assert after["n3"]["pid"] != pids["n3"]  # its own spec changed: restarted
    for name in ("n1", "n2", "n3"):
        assert asyncio.run(private_status(after[name], newcomer)) == 200, name
    own = load_identity(hmctl.state / "nodes" / "n1" / "identity.key")
    config = json.loads((hmctl.state / "nodes" / "n1" / "config.json").read_text())
    assert status_of(after["n1"], own)["configDigest"] and "n4" in config["directory"]

    # n2 leaves the network: the others reload, and n2's key is refused from then on.
    leaver = load_identity(hmctl.state / "nodes" / "n2" / "identity.key")
    assert asyncio.run(private_status(after["n1"], leaver)) == 200
    manifests(folder, "n1", "n3", "n4", tagged="n3")
    final = apply(hmctl, folder, "--prune")
    assert "n2" not in final
    assert final["n1"]["pid"] == pids["n1"]
    assert final["n3"]["pid"] == after["n3"]["pid"]
    for name in ("n1", "n3", "n4"):
        assert asyncio.run(private_status(final[name], leaver)) == 403, name
    assert asyncio.run(private_status(final["n1"], newcomer)) == 200


def test_a_malformed_config_is_refused_and_the_old_one_kept(hmctl: Hmctl, tmp_path: Path) -> None:
    folder = tmp_path / "net"
    folder.mkdir()
    manifests(folder, "n1", "n2")
    nodes = apply(hmctl, folder)
    n1_dir = hmctl.state / "nodes" / "n1"
    own = load_identity(n1_dir / "identity.key")
    member = load_identity(hmctl.state / "nodes" / "n2" / "identity.key")
    digest = status_of(nodes["n1"], own)["configDigest"]
    config = n1_dir / "config.json"
    good = config.read_text()

    # Not JSON; then a private policy that does not compile (the gates are swapped all or none).
    unfit = {**json.loads(good), "private_policy": {"default": "sometimes"}}
    for bad in ("{not json", json.dumps(unfit)):
        config.write_text(bad)
        os.kill(nodes["n1"]["pid"], signal.SIGHUP)
        refused = c.wait_for(lambda: status_of(nodes["n1"], own).get("reloadRefused"), 10)
        assert isinstance(refused, dict) and refused["error"], refused
        status = status_of(nodes["n1"], own)
        assert status["pid"] == nodes["n1"]["pid"]
        assert status["configDigest"] == digest  # still the config it ran
        assert asyncio.run(private_status(nodes["n1"], member)) == 200  # n2 still a member

    # A config that changes the node's own listen address needs a restart: refused too.
    moved = {**json.loads(good), "listen": "127.0.0.1:1"}
    config.write_text(json.dumps(moved))
    os.kill(nodes["n1"]["pid"], signal.SIGHUP)
    refused = c.wait_for(
        lambda: "listen" in str(status_of(nodes["n1"], own).get("reloadRefused")), 10
    )
    assert refused
    log = (n1_dir / "node.log").read_text()
    assert "config reload refused" in log

    # The good file again: it loads, and the refusal is gone.
    config.write_text(good)
    os.kill(nodes["n1"]["pid"], signal.SIGHUP)
    c.wait_for(lambda: "reloadRefused" not in status_of(nodes["n1"], own), 10)
    assert status_of(nodes["n1"], own)["pid"] == nodes["n1"]["pid"]


def test_a_federated_network_added_reloads_and_a_second_apply_restarts_nothing(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    manifest = tmp_path / "federation.yaml"
    manifest.write_text(federation.MANIFEST)
    first = apply(hmctl, tmp_path, "-f", str(manifest))
    same = hmctl("diff", "-f", str(manifest))
    assert same.returncode == 0, same.stdout  # a federated node's config is not seen outdated
    again = apply(hmctl, tmp_path, "-f", str(manifest))
    assert {n: s["pid"] for n, s in again.items()} == {n: s["pid"] for n, s in first.items()}

    onode = load_identity(hmctl.state / "nodes" / "onode" / "identity.key")
    status, words = federation.private_get(first["alpha"], onode, "/status")
    assert (status, "not a member" in words) == (403, True), words
    partners = "    - {name: partners, network: partners}\n"
    both = partners + "    - {name: other, network: other}\n"
    manifest.write_text(federation.MANIFEST.replace(partners, both))
    after = apply(hmctl, tmp_path, "-f", str(manifest))
    assert after["alpha"]["pid"] == first["alpha"]["pid"]  # reloaded, not restarted
    # onode is now known (as other/onode), and the policy, which names only partners, denies it.
    c.wait_for(
        lambda: "other/onode" in federation.private_get(after["alpha"], onode, "/status")[1], 20
    )
