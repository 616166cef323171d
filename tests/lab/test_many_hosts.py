"""Issue 16's scenario in the lab (a DRAFT: the lead integrates it): four hosts, each its own
controller, converging one git repository of manifests.

- host ``reg`` runs the network's registry (its identity pinned: ``hmctl keys show`` there);
- host ``b`` runs ``alpha``, a mirror pinned by identity (``hmctl keys show alpha`` on host b);
- host ``c`` runs ``beta``, which joins by a single-use token (``hmctl network token create`` on
  host reg, then ``--join-token-file`` on host c);
- host ``d`` later tries to join ``delta`` with the same, used, token: refused, nothing stored.

Every link plain, then every link 12.5 ms each way (50 ms RTT host to host) with 1% loss. Node
records live 4 s (``$HM_RECORD_LIFETIME``), so a cut host leaves the directory quickly.

Not drafted yet (the lead's integration): a TLD registered on host B resolving verified from host
C, a Record targeting a node on host C, private interfaces across hosts and a non-member
refused, chains and messages across hosts, a fresh host joining a stand-in public network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HEADER, wait_for
from tests.lab.conftest import require_lab
from tests.lab.controller import HostController, ManifestRepo
from tests.lab.lab import Lab

WAIT = 90.0
LIFETIME = "4"
PORT = 4433
CONDITIONS = {"plain": {}, "slow": {"delay_ms": 12.5, "loss": 0.01}}


@dataclass
class Mesh:
    """The four hosts, their controllers and what the scenario learnt on the way."""

    lab: Lab
    root: Path
    repo: ManifestRepo
    delay_ms: float = 0.0
    controllers: dict[str, HostController] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    token_file: Path | None = None

    def controller(self, host: str, *extra: str) -> HostController:
        made = HostController(
            self.lab.host(host),
            self.repo,
            self.root / "hosts",
            extra_args=extra,
            env={"HM_RECORD_LIFETIME": LIFETIME},
        )
        self.controllers[host] = made
        return made

    def address(self, host: str) -> str:
        return f"{self.lab.host(host).address}:{PORT}"


def node(name: str, host: str, address: str, roles: str, identity: str | None = None) -> str:
    pinned = f", identity: {identity}" if identity else ""
    return (
        f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\n"
        f'spec: {{host: {host}, network: demo, listen: "{address}", roles: [{roles}], '
        f"interfaces: [public, private]{pinned}}}\n"
    )


def manifests(mesh: Mesh, with_delta: bool = False) -> dict[str, str | None]:
    network = (
        f"{HEADER}kind: Network\nmetadata: {{name: demo}}\n"
        "spec: {mode: private, registry: {node: registry}}\n"
    )
    return {
        "network.yaml": network,
        "registry.yaml": node(
            "registry", "reg", mesh.address("reg"), "registry", mesh.ids["registry"]
        ),
        "alpha.yaml": node("alpha", "b", mesh.address("b"), "mirror", mesh.ids["alpha"]),
        "beta.yaml": node("beta", "c", mesh.address("c"), "mirror"),
        "delta.yaml": node("delta", "d", mesh.address("d"), "mirror") if with_delta else None,
    }


def nodes(controller: HostController) -> dict[str, dict[str, Any]]:
    """``hmctl get nodes -o json`` on a host: each Node's status, by name."""
    done = controller.hmctl("get", "nodes", "-o", "json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return {i["metadata"]["name"]: i["status"] for i in json.loads(done.stdout)["items"]}


def runs(controller: HostController, name: str) -> bool:
    status = nodes(controller).get(name, {})
    return bool(status.get("pid")) and status.get("phase") == "Running"


def listed(controller: HostController, name: str, address: str) -> dict[str, Any] | None:
    """The remote Node ``name`` as the directory shows it, when its record names ``address``."""
    status = nodes(controller).get(name, {})
    return status if address in str(status.get("address", "")) else None


def _build(mesh: Mesh) -> None:
    registry = mesh.controller("reg")
    alpha = mesh.controller("b")
    for controller, name in ((registry, "registry"), (alpha, "alpha")):
        controller.folder.mkdir(parents=True, exist_ok=True)
        shown = controller.hmctl("keys", "show", name)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        mesh.ids[name] = shown.stdout.strip()
    mesh.repo.write(manifests(mesh), "a network over four hosts")
    registry.start()
    wait_for(lambda: runs(registry, "registry"), timeout=WAIT)
    created = registry.hmctl("network", "token", "create", "--ttl", "1h")
    assert created.returncode == 0, created.stdout + created.stderr
    token = created.stdout.strip()
    assert token.startswith("hmjoin-") and token not in registry.output()
    mesh.token_file = mesh.root / "token"
    mesh.token_file.write_text(token + "\n")
    mesh.token_file.chmod(0o600)
    alpha.start()
    beta = mesh.controller("c", "--join-token-file", str(mesh.token_file)).start()
    wait_for(lambda: runs(alpha, "alpha"), timeout=WAIT)
    wait_for(lambda: runs(beta, "beta"), timeout=WAIT)


@pytest.fixture(scope="module", params=sorted(CONDITIONS))
def mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    """The scenario's four hosts, converged; torn down whatever happens."""
    require_lab()
    lab = Lab(**CONDITIONS[request.param])
    try:
        for host in ("reg", "b", "c", "d"):
            lab.add_host(host)
        root = tmp_path_factory.mktemp(f"mesh-{request.param}")
        made = Mesh(
            lab, root, ManifestRepo(root / "git"), CONDITIONS[request.param].get("delay_ms", 0)
        )
        try:
            _build(made)
            yield made
        finally:
            for controller in made.controllers.values():
                controller.stop()
    finally:
        lab.close()


def test_members_are_in_the_directory_with_their_hosts(mesh: Mesh) -> None:
    registry = mesh.controllers["reg"]
    alpha = wait_for(lambda: listed(registry, "alpha", mesh.lab.host("b").address), timeout=WAIT)
    beta = wait_for(lambda: listed(registry, "beta", mesh.lab.host("c").address), timeout=WAIT)
    assert isinstance(alpha, dict) and isinstance(beta, dict)
    assert alpha["identity"] == mesh.ids["alpha"] and alpha["host"] == "b"
    assert beta["identity"].startswith("hm1") and beta["host"] == "c"
    assert isinstance(beta.get("recordAge"), int)
    # Joined by token: beta's key is its own, made on host c, and remembered there.
    assert (mesh.controllers["c"].state / "nodes" / "beta" / "joined.json").exists()


def test_a_node_is_dialled_by_key_from_another_host(mesh: Mesh) -> None:
    beta = wait_for(
        lambda: listed(mesh.controllers["reg"], "beta", mesh.lab.host("c").address),
        timeout=WAIT,
    )
    assert isinstance(beta, dict)
    pinged = mesh.controllers["b"].hmctl(
        "ping", beta["identity"], "--via", "alpha", "-c", "3", "-o", "json"
    )
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    result = json.loads(pinged.stdout)
    assert result["node"] == beta["identity"] and result["path"] == "direct"
    assert result["address"].startswith(mesh.lab.host("c").address)
    assert len(result["rttMs"]) == 3
    # Two links of delay_ms each way: a lower bound only.
    assert min(result["rttMs"]) >= 4 * mesh.delay_ms, result["rttMs"]


def test_a_cut_host_leaves_the_directory_and_comes_back(mesh: Mesh) -> None:
    registry, alpha = mesh.controllers["reg"], mesh.controllers["b"]
    c = mesh.lab.host("c").address
    wait_for(lambda: listed(registry, "beta", c), timeout=WAIT)
    mesh.lab.cut("c")
    try:
        wait_for(lambda: nodes(registry)["beta"].get("phase") == "NoRecord", timeout=WAIT)
        # The mirror on host b keeps answering meanwhile.
        asked = alpha.hmctl("dns", "query", "_nodes.", "SOA", "--via", "alpha", "-o", "json")
        assert asked.returncode == 0, asked.stdout + asked.stderr
    finally:
        mesh.lab.heal("c")
    wait_for(lambda: listed(registry, "beta", c), timeout=WAIT)


def test_a_used_token_is_refused_with_nothing_stored(mesh: Mesh) -> None:
    assert mesh.token_file is not None
    mesh.repo.write(manifests(mesh, with_delta=True), "delta on host d, with a used token")
    delta = mesh.controller("d", "--join-token-file", str(mesh.token_file)).start()
    delta.wait_for_output("already used", timeout=WAIT)
    token = mesh.token_file.read_text().strip()
    assert token not in delta.output() and token not in mesh.controllers["reg"].output()
    assert not runs(delta, "delta")
    assert nodes(mesh.controllers["reg"])["delta"].get("phase") == "NoRecord"
    listing = mesh.controllers["reg"].hmctl("network", "token", "list", "-o", "json")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert token not in listing.stdout
