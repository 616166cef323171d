"""The lab's controller helpers: a host's own ``hmctl controller run --git-pull`` converges its
Nodes from the lab's git repository, a commit reaches it, another host reaches its node across
the internet namespace, and ``stop()`` leaves no node running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import HEADER, wait_for
from tests.lab.controller import HMCTL, HostController, ManifestRepo
from tests.lab.lab import Lab

WAIT = 60.0


def manifests(host: str, address: str, extra: bool = False) -> dict[str, str | None]:
    network = (
        f"{HEADER}kind: Network\nmetadata: {{name: demo}}\n"
        "spec: {mode: private, registry: {node: registry}}\n"
    )
    registry = (
        f"{HEADER}kind: Node\nmetadata: {{name: registry}}\n"
        f'spec: {{host: {host}, network: demo, listen: "{address}:4433", roles: [registry], '
        "interfaces: [public, private]}\n"
    )
    second = (
        f"{HEADER}kind: Node\nmetadata: {{name: extra}}\n"
        f'spec: {{host: {host}, network: demo, listen: "{address}:0", roles: [mirror]}}\n'
    )
    return {
        "network.yaml": network,
        "registry.yaml": registry,
        "extra.yaml": second if extra else None,
    }


def running(controller: HostController) -> dict[str, dict[str, Any]]:
    """The Nodes this host's controller runs, by name (those with a pid and Ready)."""
    done = controller.hmctl("get", "nodes", "-o", "json")
    assert done.returncode == 0, done.stderr
    found = {}
    for item in json.loads(done.stdout)["items"]:
        status = item["status"]
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )
        if ready and status.get("pid"):
            found[item["metadata"]["name"]] = status
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_host_controller_converges_the_repository(lab: Lab, tmp_path: Path) -> None:
    r, c = lab.add_host("r"), lab.add_host("c")
    repo = ManifestRepo(tmp_path / "git", manifests("r", r.address))
    with HostController(r, repo, tmp_path / "hosts") as controller:
        nodes = wait_for(lambda: running(controller).get("registry"), timeout=WAIT)
        assert isinstance(nodes, dict)
        assert nodes["address"] == f"{r.address}:4433"
        identity = nodes["identity"]
        # Host c reaches the node on host r through the internet namespace, key pinned.
        asked = c.run(
            [*HMCTL, "dns", "query", "_nodes.", "SOA", "--address",
             f"{r.address}:4433", "--identity", identity, "-o", "json"],
            env=controller.env(),
            timeout=60,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stdout + asked.stderr
        # A commit reaches the host: its controller pulls and starts the new Node.
        repo.write(manifests("r", r.address, extra=True), "a second node on host r")
        wait_for(lambda: "extra" in running(controller), timeout=WAIT)
        pids = [s["pid"] for s in running(controller).values()]
    # stop(): the controller is gone and so are its nodes, before the lab closes.
    assert len(pids) == 2
    wait_for(lambda: not [p for p in pids if alive(p)], timeout=30)
    assert controller.log.exists() and "registry" in controller.output()
