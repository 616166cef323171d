"""Placement (``hypermesh.model.placement``) and the validation of Nodes over several hosts:
a registry remote to other hosts needs a pinned key and a reachable address, a key is pinned by
one Node, Nodes on different hosts may listen on the same port."""

from __future__ import annotations

from pathlib import Path

from hypermesh.errors import ManifestError
from hypermesh.model.placement import Placement, reachable_address
from hypermesh.model.resources import ResourceKey
from hypermesh.model.validate import load_desired
from tests.conftest import HEADER

REGISTRY_ID = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"
OTHER_ID = "hm1hicu2dlr25mo7qc6qexld4czeerndrihzc5axnbw7raecrwp7qyq"

NETWORK = (
    f"{HEADER}kind: Network\nmetadata: {{name: acme}}\n"
    "spec:\n  mode: private\n  registry: {node: registry}\n"
)


def node(name: str, *lines: str) -> str:
    body = "".join(f"  {line}\n" for line in lines)
    return f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\nspec:\n  network: acme\n{body}"


def problems(tmp_path: Path, *docs: str) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text("---\n".join(docs))
    try:
        load_desired([str(path)])
    except ManifestError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_a_registry_remote_to_other_hosts_needs_identity_and_address(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        NETWORK,
        node("registry", "host: a", "roles: [registry]", 'listen: "0.0.0.0:0"'),
        node("edge", "host: b"),
    )
    where = f"{tmp_path / 'm.yaml'}"
    identity = [p for p in found if "needs 'identity'" in p]
    address = [p for p in found if "reachable address" in p]
    assert len(identity) == 1 and len(address) == 1, found
    # file:line:col of the registry Node's host and listen
    assert identity[0].startswith(f"{where}:13:3: Node/registry: spec.host:"), identity
    assert address[0].startswith(f"{where}:15:3: Node/registry: spec.listen:"), address
    assert "hmctl keys show registry" in identity[0]


def test_a_pinned_registry_with_an_advertised_address_is_valid(tmp_path: Path) -> None:
    assert not problems(
        tmp_path,
        NETWORK,
        node(
            "registry",
            "host: a",
            f"identity: {REGISTRY_ID}",
            "roles: [registry]",
            'listen: "0.0.0.0:4433"',
            'advertise: ["198.18.0.2:4433"]',
        ),
        node("edge", "host: b", 'listen: "0.0.0.0:4433"'),  # same port, other host: no clash
    )


def test_one_host_needs_nothing_more(tmp_path: Path) -> None:
    assert not problems(tmp_path, NETWORK, node("registry", "roles: [registry]"), node("edge"))


def test_listen_clashes_only_on_one_host(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        NETWORK,
        node("registry", "host: a", "roles: [registry]", 'listen: "127.0.0.1:4433"'),
        node("edge", "host: a", 'listen: "0.0.0.0:4433"'),
    )
    assert any("clashes with Node/registry" in p for p in found), found


def test_a_key_is_pinned_by_one_node(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        NETWORK,
        node("registry", "roles: [registry]", f"identity: {OTHER_ID}"),
        node("edge", f"identity: {OTHER_ID}"),
    )
    assert len(found) == 1 and "already pinned by Node/registry" in found[0], found


def test_identity_and_host_formats_are_checked(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        NETWORK,
        node("registry", "roles: [registry]", "identity: hm1short"),
        node("edge", "host: Not_A_Label", 'advertise: ["nowhere"]'),
    )
    assert any("spec.identity" in p for p in found), found
    assert any("spec.host" in p for p in found), found
    assert any("spec.advertise[0]" in p for p in found), found


def test_placement_splits_local_from_remote(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    tld = (
        f"{HEADER}kind: TLD\nmetadata: {{name: bee}}\n"
        "spec: {network: acme, owner: {node: edge}}\n"
    )
    record = (
        f"{HEADER}kind: Record\nmetadata: {{name: www.bee}}\n"
        "spec: {tld: bee, type: A, values: [192.0.2.1]}\n"
    )
    path.write_text(
        "---\n".join(
            [
                NETWORK,
                node(
                    "registry",
                    "host: a",
                    f"identity: {REGISTRY_ID}",
                    "roles: [registry]",
                    'listen: "127.0.0.1:4433"',
                ),
                node("edge", "host: b"),
                tld,
                record,
            ]
        )
    )
    desired = load_desired([str(path)])
    local, remote = Placement("a").split(desired)
    assert {r.key for r in local} == {
        ResourceKey("Network", "acme"),
        ResourceKey("Node", "registry"),
    }
    assert remote[ResourceKey("TLD", "bee")] == (
        "owned by node edge on host b; converged by that host's controller"
    )
    assert "its TLD bee is owned by node edge on host b" in remote[ResourceKey("Record", "www.bee")]
    on_b, remote_b = Placement("b").split(desired)
    assert set(remote_b) == {ResourceKey("Node", "registry")}
    assert ResourceKey("TLD", "bee") in {r.key for r in on_b}
    # Without --host and spec.host nothing is remote.
    same, none = Placement(None).split(load_desired([str(_plain(tmp_path))]))
    assert not none and len(same) == 3
    registry = desired.get("Node", "registry")
    assert registry is not None and reachable_address(registry) == "127.0.0.1:4433"


def _plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.yaml"
    path.write_text("---\n".join([NETWORK, node("registry", "roles: [registry]"), node("edge")]))
    return path
