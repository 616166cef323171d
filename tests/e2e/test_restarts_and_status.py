"""End to end with real node processes on 127.0.0.1: a restarted node keeps its ports (after
kill -9 and after down/up; a port taken meanwhile is replaced by a free one), and status says
what is live — a Network counts the nodes that are in it now, and a Network whose nodes left,
and the TLD on it, are not Ready and say why."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

from hypermesh.transport.address import parse_address
from tests.conftest import HEADER, Hmctl, documents, node, node_processes, wait_for

TLD = f"{HEADER}kind: TLD\nmetadata: {{name: acme}}\nspec: {{network: a, owner: {{node: n1}}}}\n"
"""The TLD acme on network a, owned by node n1."""

ADDRESSES = ("address", "privateAddress", "ephemeralAddress", "webAddress")


def items(hmctl: Hmctl, kind: str) -> dict[str, dict[str, Any]]:
    result = hmctl("get", kind, "-o", "json")
    assert result.returncode == 0, result.stderr
    return {i["metadata"]["name"]: i for i in json.loads(result.stdout)["items"]}


def ready(item: dict[str, Any]) -> tuple[str, str, str]:
    (cond,) = [c for c in item["status"]["conditions"] if c["type"] == "Ready"]
    return cond["status"], cond["reason"], cond["message"]


def addresses(hmctl: Hmctl) -> tuple[dict[str, str], int]:
    """Node a's bound addresses, and its pid."""
    status = items(hmctl, "nodes")["a"]["status"]
    return {name: status[name] for name in ADDRESSES}, status["pid"]


def network(name: str, registry: str | None = None) -> str:
    spec = f"{{mode: private, registry: {{node: {registry}}}}}" if registry else "{mode: private}"
    return f"{HEADER}kind: Network\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def test_a_restarted_node_keeps_its_ports(hmctl: Hmctl, tmp_path: Path) -> None:
    manifest = tmp_path / "net.yaml"
    manifest.write_text(
        documents(
            network("demo"),
            node("a", interfaces="[public, private, ephemeral]", web="{listen: '127.0.0.1:0'}"),
        )
    )
    assert hmctl("apply", "-f", str(manifest)).returncode == 0
    first, pid = addresses(hmctl)
    assert all(address.startswith("127.0.0.1:") for address in first.values()), first

    # kill -9, then an apply brings it back: on the same ports.
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in node_processes(hmctl.state), timeout=30)
    # Meanwhile `get` says what is live, not what the last pass wrote.
    demo = items(hmctl, "networks")["demo"]
    assert (demo["status"]["nodes"], demo["status"]["readyNodes"]) == (1, 0)
    assert ready(demo)[:2] == ("False", "NoNodeReady")
    again = hmctl("apply", "-f", str(manifest))
    assert again.returncode == 0, again.stdout + again.stderr
    now, restarted = addresses(hmctl)
    assert restarted != pid and now == first

    # down, then up again (an apply): the same ports.
    assert hmctl("down").returncode == 0
    assert node_processes(hmctl.state) == set()
    assert hmctl("apply", "-f", str(manifest)).returncode == 0
    assert addresses(hmctl)[0] == first

    # A port taken meanwhile: the node takes another one and still starts.
    assert hmctl("down").returncode == 0
    port = parse_address(first["address"])[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        moved = hmctl("apply", "-f", str(manifest))
        assert moved.returncode == 0, moved.stdout + moved.stderr
        now, _ = addresses(hmctl)
        assert now["address"] != first["address"]
        assert {k: v for k, v in now.items() if k != "address"} == {
            k: v for k, v in first.items() if k != "address"
        }


def test_status_follows_nodes_that_move_between_networks(hmctl: Hmctl, tmp_path: Path) -> None:
    manifest = tmp_path / "net.yaml"

    def write(networks: dict[str, str]) -> None:
        manifest.write_text(
            documents(
                network("a", registry="reg"),
                network("b"),
                node("reg", network=networks["reg"], roles="[registry]"),
                node("n1", network=networks["n1"]),
                node("n2", network=networks["n2"]),
                TLD,
            )
        )

    # Three nodes in a (a Network b with none of them yet is not Ready: it says so).
    write({"reg": "a", "n1": "a", "n2": "a"})
    first = hmctl("apply", "-f", str(manifest))
    assert "Network/b" in first.stdout and "NoMembers" in first.stdout, first.stdout
    nets = items(hmctl, "networks")
    assert (nets["a"]["status"]["nodes"], nets["a"]["status"]["readyNodes"]) == (3, 3)
    assert ready(nets["a"])[:2] == ("True", "Converged")
    assert ready(items(hmctl, "tlds")["acme"])[:2] == ("True", "Converged")

    # A later apply moves n2 to b: a has 2 nodes, b has 1.
    write({"reg": "a", "n1": "a", "n2": "b"})
    moved = hmctl("apply", "-f", str(manifest))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    nets = items(hmctl, "networks")
    assert (nets["a"]["status"]["nodes"], nets["b"]["status"]["nodes"]) == (2, 1)
    assert ready(nets["a"])[0] == ready(nets["b"])[0] == "True"

    # Every node of a leaves: a, and the TLD on it, are not Ready, and say why.
    write({"reg": "b", "n1": "b", "n2": "b"})
    left = hmctl("apply", "-f", str(manifest))
    assert left.returncode == 1, left.stdout + left.stderr
    assert "Network/a" in left.stdout and "TLD/acme" in left.stdout
    nets = items(hmctl, "networks")
    assert nets["a"]["status"]["nodes"] == 0 and nets["b"]["status"]["nodes"] == 3
    status, reason, message = ready(nets["a"])
    assert (status, reason) == ("False", "NoMembers") and "network a" in message
    status, reason, message = ready(items(hmctl, "tlds")["acme"])
    assert (status, reason) == ("False", "DependencyNotReady")
    assert "Network/a is not ready" in message
