"""Golden tests of what a Node becomes in a cluster (Secret, ConfigMap, StatefulSet, Service),
each child validated against Kubernetes' own schemas, and the address a Service gives.

Regenerate the golden files with ``HM_UPDATE_GOLDEN=1 pytest tests/operator/test_children.py``
and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hypermesh.model.loader import load_text
from hypermesh.model.validate import build
from hypermesh.node.config import NodeConfig
from hypermesh.node.reload import fields_of, restart_needs
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from hypermesh_operator.children import (
    Cluster,
    NodeChildren,
    Owner,
    Ports,
    Settings,
    advertised_address,
    config_digest,
    keep_immutable,
    node_children,
    node_host_of,
    object_name,
    pod_name,
    ports_of,
    workload_name,
    workload_ready,
)

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
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: edge}
spec:
  network: demo
  listen: "0.0.0.0:0"
  interfaces: [public]
  web: {listen: "0.0.0.0:0"}
  expose: {type: LoadBalancer}
"""
NAMES = ["registry", "alpha", "plain.one", "edge"]


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
    ids = {name: key(i + 1)[1] for i, name in enumerate(NAMES)}
    return Cluster(desired, ids)


def made(name: str, seed: int, settings: Settings | None = None) -> NodeChildren:
    state = cluster()
    node = state.desired.get("Node", name)
    assert node is not None
    pem, node_id = key(seed)
    owner = Owner(name, "hm-test", f"uid-{name}", generation=3)
    return node_children(node, owner, state, pem, node_id, settings or Settings())


def children_of(name: str, seed: int) -> list[dict[str, object]]:
    return list(made(name, seed).all())


CASES = [(name, i + 1) for i, name in enumerate(NAMES)]


def check_golden(text: str, path: Path) -> None:
    """``text`` is ``path``'s content; with ``HM_UPDATE_GOLDEN=1`` it is written there first.
    A missing file fails: a golden test that passes without its file tests nothing."""
    if os.environ.get("HM_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"no golden file {path}; run with HM_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs; regenerate with HM_UPDATE_GOLDEN=1"


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_children_match_golden(name: str, seed: int) -> None:
    check_golden(
        yaml.safe_dump_all(children_of(name, seed), sort_keys=True), GOLDEN / f"{name}.yaml"
    )


def test_a_missing_or_different_golden_file_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HM_UPDATE_GOLDEN", raising=False)
    with pytest.raises(AssertionError, match="no golden file"):
        check_golden("kind: Secret\n", tmp_path / "missing.yaml")
    (tmp_path / "other.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(AssertionError, match="differs"):
        check_golden("kind: Secret\n", tmp_path / "other.yaml")


def test_every_golden_file_belongs_to_a_case() -> None:
    assert {p.name for p in GOLDEN.glob("*.yaml")} == {f"{name}.yaml" for name, _ in CASES}


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
    assert config.registry.peer == PeerRef("hm-registry.hm-test.svc.cluster.local:4433", key(1)[1])
    assert set(config.directory) == set(NAMES)
    assert config.generation == 3


def test_the_service_exposes_exactly_the_enabled_interfaces() -> None:
    service = children_of("alpha", 2)[2]
    spec = service["spec"]
    assert isinstance(spec, dict)
    assert [(p["name"], p["port"], p["protocol"]) for p in spec["ports"]] == [
        ("quic", 4433, "UDP"),
        ("tls", 4433, "TCP"),  # DNS over TLS and HTTPS, and a relay, on the same number
        ("private", 4434, "UDP"),
        ("ephemeral", 4435, "UDP"),
    ]
    assert ports_of({"listen": "0.0.0.0:5000", "interfaces": ["public"]}).public == 5000


def test_the_key_is_in_the_secret_only() -> None:
    secret, config_map, service, workload = children_of("alpha", 2)
    pem = key(2)[0]
    for other in (config_map, service, workload):
        assert pem.decode() not in json.dumps(other)
    assert secret["immutable"] is True


def test_long_and_dotted_names_make_valid_labels() -> None:
    assert object_name("plain.one") == "hm-plain-one"
    long = object_name("a" * 80, "identity")
    assert len(long) <= 63 and long.endswith("-identity")


# -- the StatefulSet and its volume ------------------------------------------------------------


def pod_spec(workload: dict[str, Any]) -> Any:
    return workload["spec"]["template"]["spec"]


def test_the_node_runs_in_a_statefulset_with_its_directory_on_a_claim() -> None:
    workload = made("alpha", 2).workload
    assert workload["kind"] == "StatefulSet"
    spec = workload["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == "hm-alpha"
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "node-dir"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert "storageClassName" not in claim["spec"]
    pod = pod_spec(workload)
    assert "node-dir" not in {v["name"] for v in pod["volumes"]}
    for container in [*pod["initContainers"], *pod["containers"]]:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["node-dir"] == "/var/lib/hypermesh/node"


def test_storage_size_and_class_are_settings() -> None:
    settings = Settings(storage_size="20Gi", storage_class="fast-ssd")
    workload = made("alpha", 2, settings).workload
    kubernetes_validate.validate(workload, K8S_VERSION, strict=True)
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"


def test_the_claim_template_has_no_version_label() -> None:
    """Claim templates cannot change; a version label would refuse every operator upgrade."""
    (claim,) = made("alpha", 2).workload["spec"]["volumeClaimTemplates"]
    assert "app.kubernetes.io/version" not in claim["metadata"]["labels"]
    assert claim["metadata"]["labels"]["app.kubernetes.io/instance"] == "alpha"


def test_updating_keeps_the_live_immutable_fields() -> None:
    live = made("alpha", 2).workload
    desired = made("alpha", 2, Settings(storage_size="9Gi", image="hypermesh:9")).workload
    kept = keep_immutable(desired, live)
    assert kept["spec"]["volumeClaimTemplates"] == live["spec"]["volumeClaimTemplates"]
    assert kept["spec"]["template"] == desired["spec"]["template"]
    assert desired["spec"]["volumeClaimTemplates"] != live["spec"]["volumeClaimTemplates"]
    assert keep_immutable(desired, None) == desired


def test_a_long_name_gives_a_statefulset_name_its_pods_can_carry() -> None:
    name = workload_name("n" * 70)
    assert len(name) <= 52
    assert name != workload_name("n" * 71)
    assert workload_name("alpha") == object_name("alpha") == "hm-alpha"


@pytest.mark.parametrize(
    ("status", "generation", "ready"),
    [
        ({}, 1, False),
        ({"readyReplicas": 0, "observedGeneration": 1, "updatedReplicas": 1}, 1, False),
        ({"readyReplicas": 1, "observedGeneration": 1, "updatedReplicas": 1}, 1, True),
        ({"readyReplicas": 1, "observedGeneration": 1, "updatedReplicas": 1}, 2, False),
        ({"readyReplicas": 1, "observedGeneration": 2, "updatedReplicas": 0}, 2, False),
        ({"readyReplicas": 1}, 2, True),
    ],
)
def test_the_workload_is_ready_with_a_ready_pod_of_its_current_template(
    status: dict[str, int], generation: int, ready: bool
) -> None:
    workload = {"metadata": {"generation": generation}, "status": status}
    assert workload_ready(workload) is ready


# -- exposing the node -------------------------------------------------------------------------


def service_for(expose: str | None) -> dict[str, object]:
    extra = f"\n  expose: {{type: {expose}}}" if expose else ""
    text = (
        MANIFESTS
        + f"""---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {{name: outside}}
spec:
  network: demo
  interfaces: [public]{extra}
"""
    )
    desired, problems = build(load_text(text))
    assert not problems, problems
    node = desired.get("Node", "outside")
    assert node is not None
    pem, node_id = key(9)
    owner = Owner("outside", "hm-test", "uid-outside")
    return node_children(node, owner, Cluster(desired, {}), pem, node_id).service


@pytest.mark.parametrize(
    ("expose", "kind", "policy"),
    [
        (None, "ClusterIP", None),
        ("ClusterIP", "ClusterIP", None),
        ("NodePort", "NodePort", "Local"),
        ("LoadBalancer", "LoadBalancer", "Local"),
    ],
)
def test_the_service_is_of_the_type_the_node_asks_for(
    expose: str | None, kind: str, policy: str | None
) -> None:
    service = service_for(expose)
    kubernetes_validate.validate(service, K8S_VERSION, strict=True)
    spec = service["spec"]
    assert isinstance(spec, dict)
    assert spec["type"] == kind
    assert spec.get("externalTrafficPolicy") == policy
    assert spec["ports"] == [
        {"name": "quic", "port": 4433, "targetPort": "quic", "protocol": "UDP"},
        {"name": "tls", "port": 4433, "targetPort": "tls", "protocol": "TCP"},
    ]


def test_an_unknown_expose_type_is_refused_by_the_schema() -> None:
    text = MANIFESTS.replace("expose: {type: LoadBalancer}", "expose: {type: Ingress}")
    _, problems = build(load_text(text))
    assert any("expose" in str(problem) for problem in problems), problems


PORTS = Ports(public=4433, private=None, ephemeral=None, web=None)


def returned(kind: str, **fields: object) -> dict[str, Any]:
    """A Service as the API server returns it: cluster IP and node ports allocated."""
    port: dict[str, object] = {"name": "quic", "port": 4433, "targetPort": "quic"}
    port["protocol"] = "UDP"
    if kind != "ClusterIP":
        port["nodePort"] = 31433
    spec = {"type": kind, "clusterIP": fields.pop("cluster_ip", "10.96.0.7"), "ports": [port]}
    return {"apiVersion": "v1", "kind": "Service", "spec": spec, "status": fields}


@pytest.mark.parametrize(
    ("service", "node_host", "address"),
    [
        (returned("ClusterIP"), None, "10.96.0.7:4433"),
        (returned("ClusterIP", cluster_ip="fd00:10:96::7"), None, "[fd00:10:96::7]:4433"),
        (returned("ClusterIP", cluster_ip="None"), None, None),
        (returned("NodePort"), "203.0.113.5", "203.0.113.5:31433"),
        (returned("NodePort"), None, None),
        (returned("LoadBalancer", loadBalancer={}), None, None),
        (
            returned("LoadBalancer", loadBalancer={"ingress": [{"ip": "198.51.100.4"}]}),
            None,
            "198.51.100.4:4433",
        ),
        (
            returned(
                "LoadBalancer", loadBalancer={"ingress": [{"hostname": "a1.elb.example.com"}]}
            ),
            "203.0.113.5",
            "a1.elb.example.com:4433",
        ),
        (
            returned("LoadBalancer", loadBalancer={"ingress": [{"ip": "2001:db8::4"}]}),
            None,
            "[2001:db8::4]:4433",
        ),
        (
            returned(
                "LoadBalancer",
                loadBalancer={
                    "ingress": [
                        {
                            "ip": "198.51.100.4",
                            "ports": [{"port": 4433, "protocol": "UDP", "error": "Unsupported"}],
                        },
                        {"ip": "198.51.100.9", "ports": [{"port": 4433, "protocol": "UDP"}]},
                    ]
                },
            ),
            None,
            "198.51.100.9:4433",
        ),
    ],
)
def test_the_advertised_address_is_read_from_the_returned_service(
    service: dict[str, Any], node_host: str | None, address: str | None
) -> None:
    assert advertised_address(service, PORTS, node_host) == address


def test_a_service_without_the_quic_port_gives_no_address() -> None:
    service = returned("ClusterIP")
    service["spec"]["ports"][0]["name"] = "web"
    service["spec"]["ports"][0]["port"] = 8080
    assert advertised_address(service, PORTS) is None


@pytest.mark.parametrize(
    ("addresses", "host"),
    [
        (
            [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "k"}],
            "172.18.0.2",
        ),
        (
            [
                {"type": "InternalIP", "address": "10.0.0.5"},
                {"type": "ExternalIP", "address": "203.0.113.5"},
            ],
            "203.0.113.5",
        ),
        ([{"type": "Hostname", "address": "kind-control-plane"}], None),
        ([], None),
    ],
)
def test_a_node_port_is_reached_at_the_best_outside_address_of_the_pods_node(
    addresses: list[dict[str, str]], host: str | None
) -> None:
    assert node_host_of({"kind": "Node", "status": {"addresses": addresses}}) == host


def test_the_pod_is_the_statefulsets_one_ordinal() -> None:
    assert pod_name("plain.one") == "hm-plain-one-0"


# -- what reloads in the pod and what rolls it -------------------------------------------------

JOINER = """
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: gamma}
spec: {network: demo, listen: "0.0.0.0:0", interfaces: [public, private]}
"""
PUBLIC_POLICY = """
---
apiVersion: hypermesh.online/v1alpha1
kind: InterfacePolicy
metadata: {name: open}
spec: {network: demo, interface: public, default: allow}
"""


def rendered(manifests: str, ids: dict[str, str] | None = None) -> dict[str, NodeChildren]:
    """The children of every Node of ``manifests`` (the Nodes of MANIFESTS keyed as there)."""
    desired, problems = build(load_text(manifests))
    assert not problems, problems
    known = {name: key(i + 1)[1] for i, name in enumerate(NAMES)} | (ids or {})
    state = Cluster(desired, known)
    out = {}
    for node in desired.of_kind("Node"):
        pem = key(NAMES.index(node.name) + 1 if node.name in NAMES else 99)[0]
        owner = Owner(node.name, "hm-test", f"uid-{node.name}", generation=3)
        out[node.name] = node_children(node, owner, state, pem, known[node.name])
    return out


def digest_of(children: NodeChildren) -> str:
    return str(children.workload["spec"]["template"]["metadata"]["annotations"][DIGEST])


def config_of(children: NodeChildren) -> NodeConfig:
    return NodeConfig.from_json(children.config_map["data"]["config.json"])


DIGEST = "hypermesh.online/config-digest"


def test_a_member_added_changes_the_configmaps_but_rolls_no_other_pod() -> None:
    before = rendered(MANIFESTS)
    after = rendered(MANIFESTS + JOINER, {"gamma": key(99)[1]})
    assert set(after) == {*NAMES, "gamma"}
    for name in NAMES:
        assert digest_of(after[name]) == digest_of(before[name]), name
        assert after[name].workload == before[name].workload, name  # nothing to patch
    # the nodes with a gate learn of the new member through their ConfigMap (and reload it)
    for name in ("registry", "alpha"):
        assert "gamma" not in config_of(before[name]).directory
        assert config_of(after[name]).directory["gamma"]["identity"] == key(99)[1]
        assert after[name].config_map != before[name].config_map


@pytest.mark.parametrize(
    ("node", "old", "new"),
    [
        (
            "alpha",
            "metadata: {name: alpha}\nspec:\n",
            "metadata: {name: alpha}\nspec:\n  tags: [x]\n",
        ),
        ("plain.one", 'listen: "0.0.0.0:5000"', 'listen: "0.0.0.0:5001"'),
        ("alpha", "interfaces: [public, private, ephemeral]", "interfaces: [public, private]"),
        ("alpha", "roles: [mirror]", "roles: [mirror, relay]"),
    ],
)
def test_a_change_of_a_nodes_own_spec_rolls_its_pod_only(node: str, old: str, new: str) -> None:
    """Its own pod rolls; the others whose config changed with it (a member's tags or address
    in their directory) reload."""
    assert old in MANIFESTS
    before, after = rendered(MANIFESTS), rendered(MANIFESTS.replace(old, new))
    rolled = {n for n in NAMES if digest_of(after[n]) != digest_of(before[n])}
    assert rolled == {node}


def test_a_generation_or_a_public_policy_declared_rolls_the_pod() -> None:
    before = rendered(MANIFESTS)
    bumped = made("alpha", 2)  # generation 3
    later = node_children(
        cluster().desired.get("Node", "alpha"),  # type: ignore[arg-type]
        Owner("alpha", "hm-test", "uid-alpha", generation=4),
        cluster(),
        key(2)[0],
        key(2)[1],
    )
    assert digest_of(later) != digest_of(bumped)
    # a public policy gives the public interface a gate only a restart opens
    policed = rendered(MANIFESTS + PUBLIC_POLICY)
    assert all(digest_of(policed[n]) != digest_of(before[n]) for n in NAMES)


@pytest.mark.parametrize(
    "change",
    [
        {"directory": {}},
        {"private_policy": {"default": "deny"}},
        {"public_policy": {"default": "allow"}},
        {"federation": [{"name": "b", "registry": {"address": "r:1", "identity": "hm1r"}}]},
        {"peers": [{"address": "p:1", "identity": "hm1p"}]},
        {"tags": ["moved"]},
        {"generation": 4},
    ],
)
def test_the_digest_changes_exactly_when_the_node_would_refuse_the_reload(
    change: dict[str, Any],
) -> None:
    """The digest on the pod template is the same for two configs exactly when a node running
    one takes the other by a reload (``node.reload.restart_needs`` empty): what it refuses
    rolls the pod, and nothing else does."""
    old = config_of(made("alpha", 2))
    old_fields = fields_of(old.to_json())
    new_fields = old_fields | change
    new = NodeConfig.from_dict(new_fields)
    assert (config_digest(new) != config_digest(old)) is bool(
        restart_needs(old_fields, fields_of(new.to_json()))
    )


def test_the_node_watches_its_configmap_mounted_as_a_directory() -> None:
    """A ``subPath`` mount is never updated by the kubelet; the config's directory is the
    ConfigMap volume, and the node is told to watch it (standalone nodes are not)."""
    children = made("alpha", 2)
    assert config_of(children).watch_config is True
    (node,) = pod_spec(children.workload)["containers"]
    (mount,) = [m for m in node["volumeMounts"] if m["name"] == "config"]
    assert "subPath" not in mount
    config_path = node["command"][node["command"].index("--config") + 1]
    assert Path(config_path).parent == Path(mount["mountPath"])
