"""Issue 16's scenario in the lab: four hosts, each its own controller, converging one git
repository of manifests.

- host ``reg`` runs the network's registry (its identity pinned: ``hmctl keys show`` there);
- host ``b`` runs ``alpha``, a mirror pinned by identity (``hmctl keys show alpha`` on host b);
- host ``c`` runs ``beta``, which joins by a single-use token (``hmctl network token create`` on
  host reg, then ``--join-token-file`` on host c);
- host ``d`` later tries to join ``delta`` with the same, used, token, then with a revoked one:
  refused, nothing stored.

On that network (plain links): a TLD owned by ``alpha`` (converged by host b alone) resolves,
DNSSEC-verified, from host c; a Record targeting ``beta`` carries host c's address; the private
interfaces admit the members from the other hosts and refuse a stranger; a message goes from
host b to host c by node ID and each chain is followed and verified from the other host; two
more hosts make a stand-in public network, which a fresh host joins with one Node manifest and
registers a TLD on.

The directory (members listed, dialled by key, a cut host leaving the directory and coming back
while the mirrors keep answering) runs on plain links and again with every link 12.5 ms each way
(50 ms RTT host to host) and 1% loss. Node records live 4 s (``$HM_RECORD_LIFETIME``), so a cut
host leaves the directory quickly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hypermesh.drivers.targets import spki_hex
from hypermesh.mirror.anchors import Anchors
from hypermesh.registry.client import API, RegistryClient
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.noderecord import NodeRecord
from tests.conftest import HEADER, wait_for
from tests.lab.conftest import require_lab
from tests.lab.controller import HostController, ManifestRepo
from tests.lab.lab import Lab

WAIT = 90.0
LIFETIME = "4"
PORT = 4433
CONDITIONS = {"plain": {}, "slow": {"delay_ms": 12.5, "loss": 0.01}}
BOTH = pytest.mark.parametrize("mesh", sorted(CONDITIONS), indirect=True)
PLAIN = pytest.mark.parametrize("mesh", ["plain"], indirect=True)
TLD = f"""\
{HEADER}kind: TLD
metadata: {{name: bravo}}
spec: {{network: demo, owner: {{node: alpha}}, ttl: 60}}
---
{HEADER}kind: Record
metadata: {{name: www.bravo}}
spec: {{tld: bravo, type: A, ttl: 60, values: [192.0.2.10]}}
---
{HEADER}kind: Record
metadata: {{name: web.bravo}}
spec: {{tld: bravo, target: {{node: beta}}}}
"""


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
    files: dict[str, str | None] = field(default_factory=dict)
    """Manifests added by the tests on the way (kept in every later commit)."""

    def controller(self, host: str, *extra: str, **env: str) -> HostController:
        made = HostController(
            self.lab.host(host),
            self.repo,
            self.root / "hosts",
            extra_args=extra,
            env={"HM_RECORD_LIFETIME": LIFETIME, **env},
        )
        self.controllers[host] = made
        return made

    def address(self, host: str) -> str:
        return f"{self.lab.host(host).address}:{PORT}"

    def write(self, message: str, with_delta: bool = False, **files: str | None) -> None:
        """Commit the manifests (the tests' additions kept) for every host to pull."""
        self.files.update({f"{name}.yaml": text for name, text in files.items()})
        self.repo.write({**manifests(self, with_delta), **self.files}, message)


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


def items(controller: HostController, kind: str) -> dict[str, dict[str, Any]]:
    """``hmctl get KIND -o json`` on a host: each resource's status, by name."""
    done = controller.hmctl("get", kind, "-o", "json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return {i["metadata"]["name"]: i["status"] for i in json.loads(done.stdout)["items"]}


def nodes(controller: HostController) -> dict[str, dict[str, Any]]:
    """``hmctl get nodes -o json`` on a host: each Node's status, by name."""
    return items(controller, "nodes")


def ready(status: dict[str, Any]) -> dict[str, Any]:
    """The Ready condition of a status (empty when it has none yet)."""
    found = [c for c in status.get("conditions", ()) if c.get("type") == "Ready"]
    return found[0] if found else {}


def runs(controller: HostController, name: str) -> bool:
    status = nodes(controller).get(name, {})
    return bool(status.get("pid")) and status.get("phase") == "Running"


def listed(controller: HostController, name: str, address: str) -> dict[str, Any] | None:
    """The remote Node ``name`` as the directory shows it, when its record names ``address``."""
    status = nodes(controller).get(name, {})
    return status if address in str(status.get("address", "")) else None


def beta_id(mesh: Mesh) -> str:
    """beta's node ID (made on host c, joined by token), as the directory shows it."""
    if "beta" not in mesh.ids:
        beta = wait_for(
            lambda: listed(mesh.controllers["reg"], "beta", mesh.lab.host("c").address),
            timeout=WAIT,
        )
        assert isinstance(beta, dict)
        mesh.ids["beta"] = str(beta["identity"])
    return mesh.ids["beta"]


def record_of(mesh: Mesh, node_id: str) -> NodeRecord:
    """A node's record from the registry's directory (``GET /registry/v1/node?id=``), verified."""
    client = RegistryClient(mesh.address("reg"), mesh.ids["registry"], identity=None)
    status, data = asyncio.run(client.call("GET", f"{API}/node?id={node_id}"))
    assert status == 200, data
    return NodeRecord.verify(data, now=time.time())


def dns_query(
    controller: HostController, via: str, name: str, type: str = "A"
) -> dict[str, Any] | None:
    """``hmctl dns query NAME TYPE --verify --via NODE -o json`` on a host: the answer when it
    is verified and not empty, else None."""
    done = controller.hmctl("dns", "query", name, type, "--verify", "--via", via, "-o", "json")
    if done.returncode != 0:
        return None
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer if answer.get("verified") and answer.get("answer") else None


def rdata(answer: dict[str, Any], type: str) -> list[str]:
    """The data of the answer's records of ``type`` (``NAME TTL IN TYPE DATA`` lines)."""
    lines = [line.split() for line in answer["answer"]]
    return [" ".join(words[4:]) for words in lines if words[3:4] == [type]]


def _build(mesh: Mesh) -> None:
    registry = mesh.controller("reg")
    alpha = mesh.controller("b")
    for controller, name in ((registry, "registry"), (alpha, "alpha")):
        controller.folder.mkdir(parents=True, exist_ok=True)
        shown = controller.hmctl("keys", "show", name)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        mesh.ids[name] = shown.stdout.strip()
    mesh.write("a network over four hosts")
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


@pytest.fixture(scope="module")
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


# -- the directory, on plain and on slow lossy links ---------------------------------------


@BOTH
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


@BOTH
def test_a_node_is_dialled_by_key_from_another_host(mesh: Mesh) -> None:
    pinged = mesh.controllers["b"].hmctl(
        "ping", beta_id(mesh), "--via", "alpha", "-c", "3", "-o", "json"
    )
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    result = json.loads(pinged.stdout)
    assert result["node"] == beta_id(mesh) and result["path"] == "direct"
    assert result["address"].startswith(mesh.lab.host("c").address)
    assert len(result["rttMs"]) == 3
    # Two links of delay_ms each way: a lower bound only.
    assert min(result["rttMs"]) >= 4 * mesh.delay_ms, result["rttMs"]


@BOTH
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


# -- names, private interfaces, chains and messages across hosts (plain links) --------------


@PLAIN
def test_a_tld_of_host_b_resolves_verified_from_host_c(mesh: Mesh) -> None:
    mesh.write("bravo, a TLD of alpha on host b", tld=TLD)
    beta = mesh.controllers["c"]
    answer = wait_for(lambda: dns_query(beta, "beta", "www.bravo"), timeout=WAIT)
    assert isinstance(answer, dict) and answer["rcode"] == "NOERROR"
    assert rdata(answer, "A") == ["192.0.2.10"], answer
    assert "checked from the registry key" in answer["verification"]
    # Converged by host b's controller alone (it holds alpha's key); the others say so.
    owner = ready(items(mesh.controllers["b"], "tlds")["bravo"])
    assert owner.get("status") == "True" and owner.get("reason") != "Remote", owner
    for host in ("reg", "c"):
        tld = ready(items(mesh.controllers[host], "tlds")["bravo"])
        assert (tld.get("status"), tld.get("reason")) == ("True", "Remote"), (host, tld)
        assert "host b" in tld["message"]
        record = ready(items(mesh.controllers[host], "records")["www.bravo"])
        assert record.get("reason") == "Remote", (host, record)


@PLAIN
def test_a_record_targeting_a_node_on_host_c_carries_its_address(mesh: Mesh) -> None:
    if "tld.yaml" not in mesh.files:
        mesh.write("bravo, a TLD of alpha on host b", tld=TLD)
    c = mesh.lab.host("c").address
    registry = mesh.controllers["reg"]

    def a_record() -> dict[str, Any] | None:
        answer = dns_query(registry, "registry", "web.bravo")
        return answer if answer and rdata(answer, "A") == [c] else None

    assert wait_for(a_record, timeout=WAIT)
    https = dns_query(registry, "registry", "web.bravo", "HTTPS")
    assert https is not None
    assert rdata(https, "HTTPS") == [f'1 . alpn="h3" port="{PORT}" ipv4hint="{c}"']
    tlsa = dns_query(registry, "registry", f"_{PORT}._udp.web.bravo", "TLSA")
    assert tlsa is not None  # DANE-EE, the SPKI of beta's key: dialled, it proves it
    assert [d.replace(" ", "") for d in rdata(tlsa, "TLSA")] == [f"310{spki_hex(beta_id(mesh))}"]


STATUS_AS = """
import asyncio
from hypermesh.transport.client import h3_get
from hypermesh.transport.identity import Identity, load_identity
key = load_identity(ARGS["key"]) if ARGS["key"] else Identity.generate()
status, _, _ = asyncio.run(h3_get(ARGS["address"], "/status", expected_id=ARGS["node"],
                                  identity=key, timeout=10))
print(json.dumps(status))
"""


@PLAIN
def test_private_interfaces_admit_members_across_hosts_and_refuse_a_stranger(mesh: Mesh) -> None:
    alpha, beta = record_of(mesh, mesh.ids["alpha"]), record_of(mesh, beta_id(mesh))
    (alpha_private,) = alpha.interfaces["private"]
    (beta_private,) = beta.interfaces["private"]
    assert beta_private.startswith(mesh.lab.host("c").address + ":")

    def status(host: str, node: str, address: str, node_id: str) -> int:
        controller = mesh.controllers.get(host) or mesh.controller(host)  # d: not started yet
        key = controller.state / "nodes" / node / "identity.key" if node else ""
        return int(controller.python(STATUS_AS, key=str(key), address=address, node=node_id))

    # alpha (host b) on beta's private interface (host c): a member by its pinned key.
    assert status("b", "alpha", beta_private, beta.node_id) == 200
    # beta (host c), a member by its token, on alpha's: alpha knows it from the anchors.
    assert wait_for(lambda: status("c", "beta", alpha_private, alpha.node_id) == 200, timeout=WAIT)
    # A key that is no member, from host d, is refused on both.
    assert status("d", "", beta_private, beta.node_id) == 403
    assert status("d", "", alpha_private, alpha.node_id) == 403


SEND = """
from hypermesh.sdk.sync import Mesh
mesh = Mesh.from_state(os.environ["HM_STATE"], node="alpha")
beta = mesh.connect(ARGS["beta"])
sent = mesh.send(beta, "hello from host b")
chain = mesh.verify_chain(of=beta)
print(json.dumps({"id": sent["id"], "address": beta.address, "size": chain.size,
                  "author": chain.author, "receipt": sent["receipt"]}))
"""


@PLAIN
def test_messages_are_delivered_and_chains_followed_across_hosts(mesh: Mesh) -> None:
    b, c = mesh.controllers["b"], mesh.controllers["c"]
    sent = b.python(SEND, beta=beta_id(mesh))
    assert sent["address"].startswith(mesh.lab.host("c").address)
    # beta's chain, verified from host b: its receipt of the message is on it.
    assert sent["author"] == beta_id(mesh) and sent["size"] > sent["receipt"]["seq"]
    assert sent["receipt"]["author"] == beta_id(mesh)
    inbox = c.hmctl("message", "inbox", "beta", "-o", "json")
    assert inbox.returncode == 0, inbox.stdout + inbox.stderr
    got = {m["id"]: m for m in json.loads(inbox.stdout)}
    assert got[sent["id"]]["from"] == mesh.ids["alpha"]
    assert got[sent["id"]]["text"] == "hello from host b"
    # beta links to alpha's block: beta (host c) follows alpha's chain (host b).
    appended = b.hmctl("chain", "append", "alpha", "--text", "from host b")
    assert appended.returncode == 0, appended.stdout + appended.stderr
    seq, digest = appended.stdout.split()[1], appended.stdout.split()[-1]
    link = f"{mesh.ids['alpha']}:{seq}:{digest}"
    linked = c.hmctl("chain", "append", "beta", "--kind", "link", "--link", link)
    assert linked.returncode == 0, linked.stdout + linked.stderr
    beta = record_of(mesh, beta_id(mesh))

    def followed() -> dict[str, Any] | None:
        data = asyncio.run(
            h3_get_json(
                beta.addresses[0], "/chain/v1/replicas", expected_id=beta.node_id, identity=None
            )
        )
        chains = {chain["author"]: chain for chain in data["chains"]}
        held = chains.get(mesh.ids["alpha"])
        return held if held and held["size"] > int(seq) else None

    held = wait_for(followed, timeout=WAIT)
    assert isinstance(held, dict) and held["forkedAt"] is None


# -- join tokens: used, revoked (expiry: tests/registry/test_directory.py, its clock moved) --


def members(mesh: Mesh) -> dict[str, Any]:
    """The network's members as the registry signs them in its anchors, by name."""
    answer = asyncio.run(
        h3_get_json(
            mesh.address("reg"),
            f"{API}/anchors",
            expected_id=mesh.ids["registry"],
            identity=None,
        )
    )
    return dict(Anchors.verify(answer, mesh.ids["registry"]).members)


def tokens(mesh: Mesh) -> dict[str, dict[str, Any]]:
    """``hmctl network token list -o json`` on the registry's host, by token ID."""
    listing = mesh.controllers["reg"].hmctl("network", "token", "list", "-o", "json")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    return {i["id"]: i for i in json.loads(listing.stdout)["items"]}


def refused_with_nothing_stored(mesh: Mesh, token: str, delta: HostController) -> None:
    """delta (host d) was refused with ``token``: not started, not a member, no record, the
    token never written anywhere."""
    registry = mesh.controllers["reg"]
    assert token not in delta.output() and token not in registry.output()
    assert not runs(delta, "delta")
    assert not (delta.state / "nodes" / "delta" / "joined.json").exists()
    assert nodes(registry)["delta"].get("phase") == "NoRecord"
    signed = members(mesh)
    assert "delta" not in signed and "beta" in signed
    assert token.split("-")[2] not in json.dumps(tokens(mesh))


@PLAIN
def test_a_used_or_revoked_token_is_refused_with_nothing_stored(mesh: Mesh) -> None:
    assert mesh.token_file is not None
    used = mesh.token_file.read_text().strip()
    mesh.write("delta on host d, with a used token", with_delta=True)
    delta = mesh.controller("d", "--join-token-file", str(mesh.token_file)).start()
    delta.wait_for_output("already used", timeout=WAIT)
    refused_with_nothing_stored(mesh, used, delta)
    assert tokens(mesh)[used.split("-")[1]]["uses"] == 1

    # A token revoked on the registry's host before it is used: refused the same way.
    registry = mesh.controllers["reg"]
    created = registry.hmctl("network", "token", "create", "--ttl", "1h")
    assert created.returncode == 0, created.stdout + created.stderr
    revoked, token_id = created.stdout.strip(), created.stdout.strip().split("-")[1]
    done = registry.hmctl("network", "token", "revoke", token_id)
    assert done.returncode == 0, done.stdout + done.stderr
    revoked_file = mesh.root / "revoked-token"
    revoked_file.write_text(revoked + "\n")
    revoked_file.chmod(0o600)
    delta.stop()
    before = len(delta.output())
    delta = mesh.controller("d", "--join-token-file", str(revoked_file)).start()
    wait_for(lambda: "revoked" in delta.output()[before:], timeout=WAIT)
    refused_with_nothing_stored(mesh, revoked, delta)
    listed = tokens(mesh)[token_id]
    assert listed["revoked"] and listed["uses"] == 0


# -- a fresh host on a stand-in public network --------------------------------------------


def public_registry(address: str, identity: str) -> str:
    """The stand-in public registry's own manifests: a public network and its registry node."""
    return (
        f"{HEADER}kind: Network\nmetadata: {{name: internet}}\n"
        "spec: {mode: public, registry: {node: root}}\n---\n"
        f"{HEADER}kind: Node\nmetadata: {{name: root}}\n"
        f'spec: {{host: pub, network: internet, listen: "{address}", roles: [registry], '
        f"identity: {identity}}}\n"
    )


def fresh_host(address: str) -> str:
    """All a fresh host needs: the public network (no registry: the bootstrap's), one Node,
    and a TLD it owns with a Record."""
    return (
        f"{HEADER}kind: Network\nmetadata: {{name: internet}}\nspec: {{mode: public}}\n---\n"
        f"{HEADER}kind: Node\nmetadata: {{name: home}}\n"
        f'spec: {{host: fresh, network: internet, listen: "{address}", roles: [mirror]}}\n---\n'
        f"{HEADER}kind: TLD\nmetadata: {{name: freshco}}\n"
        "spec: {network: internet, owner: {node: home}, ttl: 60}\n---\n"
        f"{HEADER}kind: Record\nmetadata: {{name: www.freshco}}\n"
        "spec: {tld: freshco, type: A, ttl: 60, values: [192.0.2.20]}\n"
    )


@PLAIN
def test_a_fresh_host_joins_a_public_network_with_one_node_manifest(mesh: Mesh) -> None:
    root = mesh.root / "public"
    pub, fresh = mesh.lab.add_host("pub"), mesh.lab.add_host("fresh")
    env = {"HM_RECORD_LIFETIME": LIFETIME}
    stand_in = ManifestRepo(root / "registry-git")
    registry = mesh.controllers["pub"] = HostController(pub, stand_in, root, env=env)
    registry.folder.mkdir(parents=True, exist_ok=True)
    key = registry.hmctl("keys", "show", "root").stdout.strip()
    endpoint = f"{pub.address}:{PORT}"
    stand_in.write({"internet.yaml": public_registry(endpoint, key)}, "a stand-in registry")
    registry.start()
    wait_for(lambda: runs(registry, "root"), timeout=WAIT)

    bootstrap = root / "bootstrap.json"
    bootstrap.write_text(json.dumps({"registry": {"endpoint": endpoint, "identity": key}}))
    repo = ManifestRepo(root / "home-git", {"home.yaml": fresh_host(f"{fresh.address}:{PORT}")})
    home = mesh.controllers["fresh"] = HostController(
        fresh, repo, root, env={**env, "HM_BOOTSTRAP": str(bootstrap)}
    )
    home.start()
    wait_for(lambda: runs(home, "home"), timeout=WAIT)
    # The TLD resolves from the stand-in registry, verified from its key.
    answer = wait_for(lambda: dns_query(registry, "root", "www.freshco"), timeout=WAIT)
    assert isinstance(answer, dict)
    assert rdata(answer, "A") == ["192.0.2.20"], answer
    # The fresh node is in the public directory (open registration), and mirrors the TLD.
    home_id = home.hmctl("keys", "show", "home").stdout.strip()
    client = RegistryClient(endpoint, key, identity=None)
    status, data = asyncio.run(client.call("GET", f"{API}/node?id={home_id}"))
    assert status == 200, data
    record = NodeRecord.verify(data, now=time.time())
    assert (record.network, record.host) == ("internet", "fresh")
    assert record.addresses == (f"{fresh.address}:{PORT}",)
    assert wait_for(lambda: dns_query(home, "home", "www.freshco"), timeout=WAIT)
