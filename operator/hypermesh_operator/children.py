"""What a Node custom resource becomes in the cluster: a Secret, a ConfigMap, a Deployment and a
Service. Pure: no API calls, no clock, no randomness (the key comes in).

- ``Secret`` ``hm-NAME-identity``: the node's Ed25519 key (PEM PKCS#8) and its node ID; made once
  by the operator, immutable, never logged.
- ``ConfigMap`` ``hm-NAME-config``: the node's ``NodeConfig`` JSON (``config.json``), derived
  from the Node, its Network, the network's members and InterfacePolicies as the standalone
  driver derives it, with in-cluster addresses (Services) instead of local directories.
- ``Deployment`` ``hm-NAME``: one replica (``Recreate``: one process per identity) running
  ``python -m hypermesh.node --config …``; an init container installs the key with mode 0600
  into the node's directory (the node refuses a key others may read, and a Secret volume is a
  symlink farm the node will not follow). Readiness is an ``exec`` probe over HTTP/3 (see
  ``PROBE``): the kubelet's ``httpGet`` speaks HTTP/1.1 over TCP, the node serves HTTP/3 on UDP.
- ``Service`` ``hm-NAME``: the node's QUIC ports over UDP (public; private and ephemeral when
  enabled) and its read-only web port over TCP when it serves one.

Every child carries ``app.kubernetes.io/*`` labels and an owner reference to the Node, so the
garbage collector deletes them with it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypermesh import API_VERSION, __version__
from hypermesh.drivers.nodeconfig import interfaces_of
from hypermesh.model.resources import DesiredState, Resource
from hypermesh.model.validate import split_host_port
from hypermesh.node.config import NodeConfig, Upstream

PUBLIC_PORT = 4433
"""The node's QUIC port in the pod when ``spec.listen`` says port 0."""
PRIVATE_PORT = 4434
"""The private interface's port in the pod (standalone: any free port)."""
EPHEMERAL_PORT = 4435
"""The ephemeral interface's port in the pod (standalone: any free port)."""
WEB_PORT = 8080
"""The read-only web pages' TCP port in the pod, when the node serves them."""

NODE_DIR = "/var/lib/hypermesh/node"
"""The node's writable directory in the pod (an ``emptyDir``): key, lock, runtime, databases."""
CONFIG_DIR = "/etc/hypermesh/config"
IDENTITY_DIR = "/etc/hypermesh/identity"
KEY_FILE = "identity.key"
PUBLIC_FILE = "identity.pub"
CONFIG_FILE = "config.json"
RUN_AS = 10001
"""The non-root user the image's ``hypermesh`` account has."""

MANAGED_BY = "hypermesh-operator"
PART_OF = "hypermesh"
PROBE = ["python", "-m", "hypermesh_operator.probe", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
"""The readiness probe: ``GET /healthz`` over HTTP/3 on the pod's own QUIC port, the node's key
pinned (the exact endpoint the Service exposes; a TCP probe would test another listener)."""


@dataclass(frozen=True)
class Settings:
    """How the operator builds children; defaults for a kind or k3d cluster."""

    image: str = f"hypermesh:{__version__}"
    """The HyperMesh image (nodes and operator run the same one)."""
    image_pull_policy: str = "IfNotPresent"
    """``IfNotPresent`` suits images loaded with ``kind load`` / ``k3d image import``."""
    cpu_request: str = "50m"
    memory_request: str = "64Mi"
    memory_limit: str = "256Mi"
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain, for Service addresses in node configs."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The Node custom resource as the API server knows it (what owner references need)."""

    name: str
    namespace: str
    uid: str
    generation: int = 1


@dataclass(frozen=True, slots=True)
class NodeChildren:
    """The four objects a Node becomes."""

    secret: dict[str, Any]
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]

    def all(self) -> tuple[dict[str, Any], ...]:
        """Secret and ConfigMap first: the Deployment mounts them."""
        return (self.secret, self.config_map, self.service, self.deployment)


def object_name(node: str, suffix: str = "") -> str:
    """A DNS-1035 label for a child of Node ``node``: ``hm-`` + the name with dots as dashes
    (+ ``-suffix``), shortened with a digest when longer than 63 characters."""
    base = "hm-" + node.replace(".", "-")
    tail = f"-{suffix}" if suffix else ""
    if len(base) + len(tail) > 63:
        digest = hashlib.sha256(node.encode()).hexdigest()[:8]
        base = base[: 63 - len(tail) - 9].rstrip("-") + "-" + digest
    return base + tail


def service_host(node: str, namespace: str, settings: Settings) -> str:
    """The in-cluster DNS name of Node ``node``'s Service."""
    return f"{object_name(node)}.{namespace}.svc.{settings.cluster_domain}"


def labels(node: str) -> dict[str, str]:
    """The labels of every child of Node ``node``; the first two select its pods."""
    return {
        "app.kubernetes.io/name": "hypermesh-node",
        "app.kubernetes.io/instance": _label_value(node),
        "app.kubernetes.io/component": "node",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": __version__,
    }


def selector(node: str) -> dict[str, str]:
    return {k: v for k, v in labels(node).items() if k in _SELECTOR}


_SELECTOR = ("app.kubernetes.io/name", "app.kubernetes.io/instance")


def _label_value(text: str) -> str:
    return text if len(text) <= 63 else text[:54] + hashlib.sha256(text.encode()).hexdigest()[:9]


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Node",
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner_reference(owner)],
    }


# -- ports -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ports:
    """The ports a node binds in its pod (None: the interface is off)."""

    public: int
    private: int | None
    ephemeral: int | None
    web: int | None


def ports_of(spec: Mapping[str, Any]) -> Ports:
    """Ports in the pod: ``spec.listen``'s port when it pins one, else ``PUBLIC_PORT``; fixed
    ports for private and ephemeral (a Service needs them known)."""
    port = split_host_port(str(spec.get("listen", "0.0.0.0:0")))[1] or PUBLIC_PORT
    interfaces = spec.get("interfaces", ())
    roles = spec.get("roles", ())
    web = spec.get("web")
    has_web = (isinstance(web, Mapping) and bool(web.get("listen"))) or "registry" in roles
    return Ports(
        public=port,
        private=PRIVATE_PORT if "private" in interfaces else None,
        ephemeral=EPHEMERAL_PORT if "ephemeral" in interfaces or "relay" in roles else None,
        web=WEB_PORT if has_web else None,
    )


# -- the node's configuration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cluster:
    """What the operator knows of one namespace: the declared resources (namespace-less, as one
    manifest set) and the node IDs of the Nodes whose keys it has made."""

    desired: DesiredState
    identities: Mapping[str, str]
    """Node name → node ID (from the Nodes' identity Secrets)."""


def _registry_upstream(
    registry: Mapping[str, Any], namespace: str, cluster: Cluster, settings: Settings
) -> Upstream | None:
    if "node" in registry:
        name = str(registry["node"])
        node = cluster.desired.get("Node", name)
        node_id = cluster.identities.get(name)
        if node is None or node_id is None:
            return None
        host = service_host(name, namespace, settings)
        return Upstream(address=f"{host}:{ports_of(node.spec).public}", identity=node_id)
    if registry.get("endpoint") and registry.get("identity"):
        return Upstream(address=str(registry["endpoint"]), identity=str(registry["identity"]))
    return None


def node_config(
    node: Resource, namespace: str, cluster: Cluster, settings: Settings, generation: int
) -> NodeConfig:
    """The ``NodeConfig`` of ``node`` in its pod: the derivation of the standalone driver
    (``NodeProcessDriver.apply``), with Services and node IDs where it uses directories."""
    spec = node.spec
    ports = ports_of(spec)
    network_name = str(spec["network"])
    desired = cluster.desired
    network = desired.get("Network", network_name)
    registry_spec = dict((network.spec.get("registry") or {}) if network else {})
    is_registry = "registry" in spec.get("roles", ()) or registry_spec.get("node") == node.name
    registry = (
        None if is_registry else _registry_upstream(registry_spec, namespace, cluster, settings)
    )
    derived = interfaces_of(
        node,
        desired,
        identity_of=lambda other: cluster.identities.get(other.name),
        registry_upstream=lambda spec_: _registry_upstream(spec_, namespace, cluster, settings),
        private_listen=f"0.0.0.0:{ports.private or 0}",
        ephemeral_listen=f"0.0.0.0:{ports.ephemeral or 0}",
    )
    chain = spec.get("chain") or {}
    return NodeConfig(
        name=node.name,
        network=network_name,
        listen=f"0.0.0.0:{ports.public}",
        prefer_port=None,
        interfaces=tuple(spec.get("interfaces", ())),
        roles=tuple(spec.get("roles", ())),
        tags=tuple(spec.get("tags", ())),
        generation=generation,
        node_dir=NODE_DIR,
        log_file="/dev/stdout",
        web_listen=f"0.0.0.0:{ports.web}" if ports.web else None,
        registry=registry,
        chain=bool(chain.get("enabled", True)),
        witnesses=int(chain.get("witnesses", 0)),
        peers=(),
        **derived,
    )


# -- the children ------------------------------------------------------------------------------


def identity_secret(owner: Owner, private_pem: bytes, node_id: str) -> dict[str, Any]:
    """The Secret holding the node's key (``private_pem``, PKCS#8) and its node ID."""
    meta = _metadata(owner, object_name(owner.name, "identity"))
    meta["annotations"] = {"hypermesh.online/node-id": node_id}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "immutable": True,
        "data": {
            KEY_FILE: base64.b64encode(private_pem).decode("ascii"),
            PUBLIC_FILE: base64.b64encode(f"{node_id}\n".encode()).decode("ascii"),
        },
    }


def config_map(owner: Owner, config: NodeConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, object_name(owner.name, "config")),
        "data": {CONFIG_FILE: config.to_json()},
    }


def config_digest(config: NodeConfig) -> str:
    """A digest of the config, put on the pod template so that a changed config rolls the pod."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:16]


def deployment(
    owner: Owner, ports: Ports, config: NodeConfig, settings: Settings
) -> dict[str, Any]:
    container_ports = [{"name": "quic", "containerPort": ports.public, "protocol": "UDP"}]
    if ports.private:
        container_ports.append(
            {"name": "private", "containerPort": ports.private, "protocol": "UDP"}
        )
    if ports.ephemeral:
        container_ports.append(
            {"name": "ephemeral", "containerPort": ports.ephemeral, "protocol": "UDP"}
        )
    if ports.web:
        container_ports.append({"name": "web", "containerPort": ports.web, "protocol": "TCP"})
    security = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    node_dir = {"name": "node-dir", "mountPath": NODE_DIR}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, object_name(owner.name)),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(owner.name)},
            "template": {
                "metadata": {
                    "labels": labels(owner.name),
                    "annotations": {"hypermesh.online/config-digest": config_digest(config)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": "install-key",
                            "image": settings.image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "command": [
                                "install",
                                "-m",
                                "0600",
                                f"{IDENTITY_DIR}/{KEY_FILE}",
                                f"{NODE_DIR}/{KEY_FILE}",
                            ],
                            "securityContext": security,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                            "volumeMounts": [
                                node_dir,
                                {"name": "identity", "mountPath": IDENTITY_DIR, "readOnly": True},
                            ],
                        }
                    ],
                    "containers": [
                        {
                            "name": "node",
                            "image": settings.image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "command": [
                                "python",
                                "-m",
                                "hypermesh.node",
                                "--config",
                                f"{CONFIG_DIR}/{CONFIG_FILE}",
                            ],
                            "ports": container_ports,
                            "readinessProbe": {
                                "exec": {"command": PROBE},
                                "initialDelaySeconds": 5,
                                "periodSeconds": 30,
                                "timeoutSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "resources": {
                                "requests": {
                                    "cpu": settings.cpu_request,
                                    "memory": settings.memory_request,
                                },
                                "limits": {"memory": settings.memory_limit},
                            },
                            "securityContext": security,
                            "volumeMounts": [
                                node_dir,
                                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a mount)
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "node-dir", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                        {
                            "name": "identity",
                            "secret": {
                                "secretName": object_name(owner.name, "identity"),
                                "defaultMode": 0o400,
                            },
                        },
                        {
                            "name": "config",
                            "configMap": {"name": object_name(owner.name, "config")},
                        },
                    ],
                },
            },
        },
    }


def service(owner: Owner, ports: Ports) -> dict[str, Any]:
    service_ports = [
        {"name": "quic", "port": ports.public, "targetPort": "quic", "protocol": "UDP"}
    ]
    if ports.private:
        service_ports.append(
            {"name": "private", "port": ports.private, "targetPort": "private", "protocol": "UDP"}
        )
    if ports.ephemeral:
        service_ports.append(
            {
                "name": "ephemeral",
                "port": ports.ephemeral,
                "targetPort": "ephemeral",
                "protocol": "UDP",
            }
        )
    if ports.web:
        service_ports.append(
            {"name": "web", "port": ports.web, "targetPort": "web", "protocol": "TCP"}
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, object_name(owner.name)),
        "spec": {"type": "ClusterIP", "selector": selector(owner.name), "ports": service_ports},
    }


def node_children(
    node: Resource,
    owner: Owner,
    cluster: Cluster,
    private_pem: bytes,
    node_id: str,
    settings: Settings = Settings(),
) -> NodeChildren:
    """Everything Node ``node`` becomes, for key ``private_pem`` (whose ID is ``node_id``)."""
    ports = ports_of(node.spec)
    config = node_config(node, owner.namespace, cluster, settings, owner.generation)
    return NodeChildren(
        secret=identity_secret(owner, private_pem, node_id),
        config_map=config_map(owner, config),
        deployment=deployment(owner, ports, config, settings),
        service=service(owner, ports),
    )
