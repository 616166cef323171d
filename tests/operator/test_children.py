"""Golden tests of what a Node becomes in a cluster (Secret, ConfigMap, Deployment, Service),
and each child validated against Kubernetes' own schemas.

Regenerate the golden files with ``HM_UPDATE_GOLDEN=1 pytest tests/operator/test_children.py``
and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hypermesh.model.loader import load_text
from hypermesh.model.validate import build
from hypermesh.node.config import NodeConfig
from hypermesh.transport.identity import Identity
from hypermesh_operator.children import Cluster, Owner, node_children, object_name, ports_of

GOLDEN = Path(__file__).parent / "golden"
K8S_VERSION = "1.33.0"
"""The Kubernetes version the children are validated against (a recent one, kind's default)."""

MANIFESTS = """
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: demo}
spec: {mode: private, registry: {node: registry}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: registry}
spec: {network: demo, listen: "127.0.0.1:0", roles: [registry], interfaces: [public, private]}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: alpha}
spec:
  network: demo
  listen: "127.0.0.1:0"
  roles: [mirror]
  interfaces: [public, private, ephemeral]
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: plain.one}
spec: {network: demo, listen: "0.0.0.0:5000", interfaces: [public]}
"""


def key(seed: int) -> tuple[bytes, str]:
    private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, Identity(private).node_id


def cluster() -> Cluster:
    desired, problems = build(load_text(MANIFESTS))
    assert not problems, problems
    ids = {name: key(i + 1)[1] for i, name in enumerate(["registry", "alpha", "plain.one"])}
    return Cluster(desired, ids)


def children_of(name: str, seed: int) -> list[dict[str, object]]:
    state = cluster()
    node = state.desired.get("Node", name)
    assert node is not None
    pem, node_id = key(seed)
    owner = Owner(name, "hm-test", f"uid-{name}", generation=3)
    return list(node_children(node, owner, state, pem, node_id).all())


CASES = [("registry", 1), ("alpha", 2), ("plain.one", 3)]


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_children_match_golden(name: str, seed: int) -> None:
    text = yaml.safe_dump_all(children_of(name, seed), sort_keys=True)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("HM_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with HM_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs; regenerate with HM_UPDATE_GOLDEN=1"


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_children_are_valid_kubernetes_objects(name: str, seed: int) -> None:
    for child in children_of(name, seed):
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)


def test_every_child_is_owned_by_the_node_and_labelled() -> None:
    for child in children_of("alpha", 2):
        meta = child["metadata"]
        assert isinstance(meta, dict)
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "hypermesh.online/v1alpha1",
            "kind": "Node",
            "name": "alpha",
            "uid": "uid-alpha",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "hypermesh-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "alpha"


def test_the_config_is_a_node_config_with_in_cluster_addresses() -> None:
    _, config_map, _, _ = children_of("alpha", 2)
    data = config_map["data"]
    assert isinstance(data, dict)
    config = NodeConfig.from_json(data["config.json"])
    assert config.listen == "0.0.0.0:4433"
    assert config.private_listen == "0.0.0.0:4434"
    assert config.ephemeral_listen == "0.0.0.0:4435"
    assert config.registry is not None
    assert config.registry.address == "hm-registry.hm-test.svc.cluster.local:4433"
    assert config.registry.identity == key(1)[1]
    assert set(config.directory) == {"registry", "alpha", "plain.one"}
    assert config.generation == 3


def test_the_service_exposes_exactly_the_enabled_interfaces() -> None:
    service = children_of("alpha", 2)[2]
    spec = service["spec"]
    assert isinstance(spec, dict)
    assert [(p["name"], p["port"], p["protocol"]) for p in spec["ports"]] == [
        ("quic", 4433, "UDP"),
        ("private", 4434, "UDP"),
        ("ephemeral", 4435, "UDP"),
    ]
    assert ports_of({"listen": "0.0.0.0:5000", "interfaces": ["public"]}).public == 5000


def test_the_key_is_in_the_secret_only() -> None:
    secret, config_map, deployment, service = children_of("alpha", 2)
    pem = key(2)[0]
    for other in (config_map, deployment, service):
        assert pem.decode() not in json.dumps(other)
    assert secret["immutable"] is True


def test_long_and_dotted_names_make_valid_labels() -> None:
    assert object_name("plain.one") == "hm-plain-one"
    long = object_name("a" * 80, "identity")
    assert len(long) <= 63 and long.endswith("-identity")
