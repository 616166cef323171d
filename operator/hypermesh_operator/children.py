"""What a Node custom resource becomes in the cluster: a Secret, a ConfigMap, a StatefulSet and a
Service. Pure: no API calls, no clock, no randomness (the key comes in).

- ``Secret`` ``hm-NAME-identity``: the node's Ed25519 key (PEM PKCS#8) and its node ID; made once
  by the operator, immutable, never logged.
- ``ConfigMap`` ``hm-NAME-config``: the node's ``NodeConfig`` JSON (``config.json``), derived
  from the Node, its Network, the network's members and InterfacePolicies as the standalone
  driver derives it, with in-cluster addresses (Services) instead of local directories. It is
  mounted as a directory (not a ``subPath``, which the kubelet never updates), and the node
  watches it (``watch_config``): a change of the network's members, policies or federation
  reloads in the running node; only the rest changes the pod template's digest and rolls it.
- ``StatefulSet`` ``hm-NAME``: one replica running ``python -m hypermesh.node --config …``, its
  directory (key, chain, mirror copies, message databases) on a PersistentVolumeClaim
  ``node-dir-hm-NAME-0`` made from the StatefulSet's ``volumeClaimTemplates``. A StatefulSet, not
  a Deployment with a claim of its own: it binds the one pod to the one volume by ordinal (a
  restarted or rescheduled pod gets the same data), it never runs two pods of one identity at
  once (a Deployment's rollout may, and two processes would share one key and one chain), and
  its claims are deleted with it (``persistentVolumeClaimRetentionPolicy``), so a Node's data
  goes with its key. ``Parallel`` pod management: with ``OrderedReady`` a pod that never became
  ready blocks the rollout of a corrected template. An init container installs the key with mode
  0600 into the node's directory (the node refuses a key others may read, and a Secret volume is
  a symlink farm the node will not follow). Readiness is an ``exec`` probe over HTTP/3 (see
  ``PROBE``): the kubelet's ``httpGet`` speaks HTTP/1.1 over TCP, the node serves HTTP/3 on UDP.
- ``Service`` ``hm-NAME``: the node's QUIC ports over UDP (public; private and ephemeral when
  enabled), the public port's number over TCP too (``tls``: DNS over TLS, DNS over HTTPS on
  HTTP/2 and, on a relay, the relay for nodes without UDP) and its read-only web port over TCP
  when it serves one; of the type
  ``spec.expose.type`` says (``ClusterIP`` by default; ``NodePort`` or ``LoadBalancer`` to reach
  the node from outside the cluster, with ``externalTrafficPolicy: Local`` so that the node sees
  its callers' own addresses, by which it counts the budgets of anonymous callers).
  ``advertised_address`` reads the address to advertise from the Service the API returns.

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
from hypermesh.drivers import interfaces_of
from hypermesh.model.resources import DesiredState, Resource
from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.node.reload import restart_digest
from hypermesh.transport.address import PeerRef, format_address, parse_address

PUBLIC_PORT = 4433
"""The node's QUIC port in the pod when ``spec.listen`` says port 0."""
PRIVATE_PORT = 4434
"""The private interface's port in the pod (standalone: any free port)."""
EPHEMERAL_PORT = 4435
"""The ephemeral interface's port in the pod (standalone: any free port)."""
WEB_PORT = 8080
"""The read-only web pages' TCP port in the pod, when the node serves them."""

NODE_DIR = "/var/lib/hypermesh/node"
"""The node's writable directory in the pod (its PersistentVolumeClaim): key, lock, runtime,
databases."""
NODE_DIR_VOLUME = "node-dir"
"""The name of the volume claim template (the claim is ``node-dir-hm-NAME-0``)."""
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
    storage_size: str = "1Gi"
    """The size each node's volume claim requests (a Kubernetes quantity): chain, mirror copies
    and messages of a small network fit with room to spare."""
    storage_class: str | None = None
    """The StorageClass of the nodes' volume claims; None: the cluster's default class."""


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
    workload: dict[str, Any]
    """The StatefulSet that runs the node (``workload_ready`` reads its status)."""
    service: dict[str, Any]

    def all(self) -> tuple[dict[str, Any], ...]:
        """Secret and ConfigMap first: the StatefulSet mounts them."""
        return (self.secret, self.config_map, self.service, self.workload)


def object_name(node: str, suffix: str = "", limit: int = 63) -> str:
    """A DNS-1035 label for a child of Node ``node``: ``hm-`` + the name with dots as dashes
    (+ ``-suffix``), shortened with a digest when longer than ``limit`` characters."""
    base = "hm-" + node.replace(".", "-")
    tail = f"-{suffix}" if suffix else ""
    if len(base) + len(tail) > limit:
        digest = hashlib.sha256(node.encode()).hexdigest()[:8]
        base = base[: limit - len(tail) - 9].rstrip("-") + "-" + digest
    return base + tail


WORKLOAD_NAME_LIMIT = 52
"""A StatefulSet's name is at most 52 characters: its pods carry the label
``controller-revision-hash: NAME-HASH`` (a label value is at most 63, the hash up to 10)."""


def workload_name(node: str) -> str:
    """The name of Node ``node``'s StatefulSet (its pod is ``NAME-0``)."""
    return object_name(node, limit=WORKLOAD_NAME_LIMIT)


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
    port = parse_address(str(spec.get("listen", "0.0.0.0:0")))[1] or PUBLIC_PORT
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
        return Upstream(PeerRef(format_address(host, ports_of(node.spec).public), node_id))
    if registry.get("endpoint") and registry.get("identity"):
        return Upstream(PeerRef(str(registry["endpoint"]), str(registry["identity"])))
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
        host_name=spec.get("host"),
        advertise=tuple(str(a) for a in spec.get("advertise", ())),
        network_mode=str(network.spec.get("mode", "private")) if network else "private",
        chain=bool(chain.get("enabled", True)),
        witnesses=int(chain.get("witnesses", 0)),
        peers=(),
        watch_config=True,  # the kubelet updates the ConfigMap volume: reload, no SIGHUP
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
    """A digest of what of the config only a restart applies (``node.reload.restart_digest``:
    all but the network's members, policies, federation and peers), put on the pod template so
    that such a change rolls the pod. The rest reaches the running node through the ConfigMap
    volume, which the kubelet updates in place and the node watches (``watch_config``): adding
    a member to a network rolls none of its other pods."""
    return restart_digest(config.to_json())[:16]


# -- the workload ------------------------------------------------------------------------------


def security_context() -> dict[str, Any]:
    """Both containers': not root, no privilege, nothing writable but their volumes (a fresh
    object each time: children share no mutable parts)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


NODE_DIR_MOUNT: Mapping[str, Any] = {"name": NODE_DIR_VOLUME, "mountPath": NODE_DIR}


def container_ports(ports: Ports) -> list[dict[str, Any]]:
    """The node container's named ports (the Service targets them by name)."""
    named: list[tuple[str, int | None, str]] = [("quic", ports.public, "UDP")]
    named += [("tls", ports.public, "TCP")]
    named += [("private", ports.private, "UDP"), ("ephemeral", ports.ephemeral, "UDP")]
    named += [("web", ports.web, "TCP")]
    return [
        {"name": name, "containerPort": port, "protocol": protocol}
        for name, port, protocol in named
        if port
    ]


def install_key_container(settings: Settings) -> dict[str, Any]:
    """The init container that copies the key from the Secret into the node's directory with
    mode 0600, as a regular file the node will read."""
    return {
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
        "securityContext": security_context(),
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        "volumeMounts": [
            dict(NODE_DIR_MOUNT),
            {"name": "identity", "mountPath": IDENTITY_DIR, "readOnly": True},
        ],
    }


def node_container(ports: Ports, settings: Settings) -> dict[str, Any]:
    """The container running the node process, probed over HTTP/3 on its own QUIC port."""
    return {
        "name": "node",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "hypermesh.node", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": container_ports(ports),
        "readinessProbe": {
            "exec": {"command": list(PROBE)},
            "initialDelaySeconds": 5,
            "periodSeconds": 30,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"memory": settings.memory_limit},
        },
        "securityContext": security_context(),
        "volumeMounts": [
            dict(NODE_DIR_MOUNT),
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a mount)
        ],
    }


def pod_volumes(owner: Owner) -> list[dict[str, Any]]:
    """The pod's volumes besides the node's directory (which is the claim's)."""
    identity = {"secretName": object_name(owner.name, "identity"), "defaultMode": 0o400}
    return [
        {"name": "tmp", "emptyDir": {}},
        {"name": "identity", "secret": identity},
        {"name": "config", "configMap": {"name": object_name(owner.name, "config")}},
    ]


def pod_template(
    owner: Owner, ports: Ports, config: NodeConfig, settings: Settings
) -> dict[str, Any]:
    """The node's pod; the config digest on it rolls the pod when the config changes in what
    only a restart applies (``config_digest``)."""
    return {
        "metadata": {
            "labels": labels(owner.name),
            "annotations": {"hypermesh.online/config-digest": config_digest(config)},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "fsGroup": RUN_AS,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [install_key_container(settings)],
            "containers": [node_container(ports, settings)],
            "volumes": pod_volumes(owner),
        },
    }


def volume_claim_template(owner: Owner, settings: Settings) -> dict[str, Any]:
    """The node directory's claim: one ``ReadWriteOnce`` volume of ``settings.storage_size``.
    Its labels leave out the version: a StatefulSet's claim templates cannot be changed."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.storage_size}},
    }
    if settings.storage_class is not None:
        spec["storageClassName"] = settings.storage_class
    claim_labels = {k: v for k, v in labels(owner.name).items() if k != "app.kubernetes.io/version"}
    return {"metadata": {"name": NODE_DIR_VOLUME, "labels": claim_labels}, "spec": spec}


def stateful_set(
    owner: Owner, ports: Ports, config: NodeConfig, settings: Settings
) -> dict[str, Any]:
    """The StatefulSet running the node: one replica, its directory on its own claim, the
    claim deleted with the StatefulSet (and so with the Node)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(owner, workload_name(owner.name)),
        "spec": {
            "replicas": 1,
            "serviceName": object_name(owner.name),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete",
                "whenScaled": "Retain",
            },
            "selector": {"matchLabels": selector(owner.name)},
            "template": pod_template(owner, ports, config, settings),
            "volumeClaimTemplates": [volume_claim_template(owner, settings)],
        },
    }


IMMUTABLE_WORKLOAD_FIELDS = (
    "serviceName",
    "selector",
    "podManagementPolicy",
    "volumeClaimTemplates",
)
"""The StatefulSet fields the API server refuses to change once it exists."""


def keep_immutable(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> dict[str, Any]:
    """``desired`` with the immutable fields of the ``live`` StatefulSet (as the API returned
    it), so that updating it is not refused: a changed storage size or class, or an operator of
    another version, applies to new Nodes only. No ``live``: ``desired`` unchanged."""
    result = dict(desired)
    live_spec = (live or {}).get("spec") or {}
    spec = dict(result["spec"])
    for name in IMMUTABLE_WORKLOAD_FIELDS:
        if name in live_spec:
            spec[name] = live_spec[name]
    result["spec"] = spec
    return result


def workload_ready(workload: Mapping[str, Any]) -> bool:
    """Whether the StatefulSet (as the API returned it) runs a ready pod of its current
    template: a ready replica, and, when the status reports them, the current generation
    observed and the replica updated to it (during a rollout the old pod may still be ready)."""
    status = workload.get("status") or {}
    if int(status.get("readyReplicas") or 0) < 1:
        return False
    generation = (workload.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and int(observed) < int(generation):
        return False
    updated = status.get("updatedReplicas")
    return updated is None or int(updated) >= 1


# -- the Service and the address it gives ------------------------------------------------------

EXPOSE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
"""The Service types ``spec.expose.type`` may name."""


def expose_type(spec: Mapping[str, Any]) -> str:
    """The Service type Node ``spec`` asks for; ``ClusterIP`` when it says none."""
    expose = spec.get("expose")
    kind = expose.get("type", "ClusterIP") if isinstance(expose, Mapping) else "ClusterIP"
    if kind not in EXPOSE_TYPES:
        raise ValueError(f"spec.expose.type must be one of {', '.join(EXPOSE_TYPES)}: {kind!r}")
    return str(kind)


def service_ports(ports: Ports) -> list[dict[str, Any]]:
    """The Service's ports, one per container port, each targeting it by name."""
    return [
        {
            "name": p["name"],
            "port": p["containerPort"],
            "targetPort": p["name"],
            "protocol": p["protocol"],
        }
        for p in container_ports(ports)
    ]


def service(owner: Owner, ports: Ports, kind: str = "ClusterIP") -> dict[str, Any]:
    """The node's Service of type ``kind``. Outside-facing types keep the callers' addresses
    (``externalTrafficPolicy: Local``): through the cluster's SNAT every outside caller would
    share one address, and so one budget of anonymous requests."""
    spec: dict[str, Any] = {
        "type": kind,
        "selector": selector(owner.name),
        "ports": service_ports(ports),
    }
    if kind != "ClusterIP":
        spec["externalTrafficPolicy"] = "Local"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, object_name(owner.name)),
        "spec": spec,
    }


def pod_name(node: str) -> str:
    """The name of Node ``node``'s pod: its StatefulSet's one ordinal."""
    return f"{workload_name(node)}-0"


NODE_ADDRESS_TYPES = ("ExternalIP", "ExternalDNS", "InternalIP")
"""The addresses of a Kubernetes node that reach it from outside, best first (on kind, k3d and
bare metal the internal IP is the only one, and the one that works)."""


def node_host_of(kubernetes_node: Mapping[str, Any]) -> str | None:
    """The host at which a Kubernetes node (the ``Node`` object the API returns, whose name is
    the pod's ``spec.nodeName``) is reached from outside: ``advertised_address``'s ``node_host``
    for a ``NodePort`` Service."""
    listed = (kubernetes_node.get("status") or {}).get("addresses") or ()
    for kind in NODE_ADDRESS_TYPES:
        for address in listed:
            if address.get("type") == kind and address.get("address"):
                return str(address["address"])
    return None


def _quic_port(service: Mapping[str, Any], ports: Ports) -> Mapping[str, Any] | None:
    listed = (service.get("spec") or {}).get("ports") or ()
    for port in listed:
        if port.get("name") == "quic" or (
            port.get("name") is None and port.get("port") == ports.public
        ):
            return dict(port)
    return None


def _load_balancer_host(service: Mapping[str, Any], port: int) -> str | None:
    """The first ingress of the Service's load balancer (its IP, else its host name) that does
    not report an error for ``port`` over UDP (a load balancer that cannot carry UDP says so in
    ``ingress[].ports[].error``)."""
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
    for entry in ingress:
        refused = any(
            p.get("port") == port and p.get("protocol", "TCP") == "UDP" and p.get("error")
            for p in entry.get("ports") or ()
        )
        host = entry.get("ip") or entry.get("hostname")
        if host and not refused:
            return str(host)
    return None


def advertised_address(
    service: Mapping[str, Any], ports: Ports, node_host: str | None = None
) -> str | None:
    """The ``host:port`` at which the node's QUIC port is reached through ``service`` (the
    Service as the API returned it), or None while that is not known:

    - ``LoadBalancer``: the first ingress of ``status.loadBalancer`` (its IP, else its host
      name) and the Service's port; None until the load balancer is provisioned, or when it
      reports that it cannot carry the port over UDP.
    - ``NodePort``: ``node_host`` (the outside address of the Kubernetes node that runs the
      node's pod: with ``externalTrafficPolicy: Local`` no other node forwards) and the allocated
      ``nodePort``. The Service says nothing of nodes, so without ``node_host``: None.
    - ``ClusterIP``: the cluster IP and the Service's port (reachable inside the cluster only);
      None for a headless Service or before an IP is allocated.
    """
    spec = service.get("spec") or {}
    quic = _quic_port(service, ports)
    if quic is None:
        return None
    kind = spec.get("type", "ClusterIP")
    if kind == "LoadBalancer":
        host = _load_balancer_host(service, int(quic["port"]))
        return format_address(host, int(quic["port"])) if host else None
    if kind == "NodePort":
        node_port = quic.get("nodePort")
        return format_address(node_host, int(node_port)) if node_host and node_port else None
    cluster_ip = spec.get("clusterIP")
    if kind != "ClusterIP" or not cluster_ip or cluster_ip == "None":
        return None
    return format_address(str(cluster_ip), int(quic["port"]))


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
        workload=stateful_set(owner, ports, config, settings),
        service=service(owner, ports, expose_type(node.spec)),
    )
