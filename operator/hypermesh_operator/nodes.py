"""The Node driver of Kubernetes: a Node is its children (``hypermesh_operator.children``).

What ``NodeProcessDriver`` is in standalone mode: ``apply`` makes the node's Secret (its key,
made once), ConfigMap (its config, derived from the network as ``hmctl`` derives it), Service
and workload, all owned by the Node (so deleting the Node takes them along); ``observe`` reads
them back, reports drift (a child missing, or not what the builders make now: the network's
members, keys or policies changed, or someone edited it by hand) and the node's readiness
(its pod ready). The status fields are ``hmctl``'s: ``identity``, ``address``,
``privateAddress``, ``ephemeralAddress``, plus ``service``.

An operator of an earlier version ran a Node in a Deployment named ``hm-NAME``: at the first
convergence of each Node after the operator starts, such a Deployment, when the Node owns it,
is deleted, so that its pod does not run beside the StatefulSet's with the same key.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableSet
from typing import Any

from hypermesh.errors import PermanentError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Drift, DriftKind
from hypermesh.reconcile import ApplyContext, Live, Outcome
from hypermesh.transport.address import format_address
from hypermesh.transport.identity import Identity
from hypermesh_operator import children
from hypermesh_operator.directory import Keys, pem_of
from hypermesh_operator.kube import Kube, contains, path_for, path_of


class KubeNodeDriver:
    """Converges one Node of a namespace into its children."""

    kinds: tuple[str, ...] = ("Node",)
    manages_world: bool = True

    def __init__(
        self,
        kube: Kube,
        keys: Keys,
        owner: children.Owner,
        identities: Mapping[str, str],
        settings: children.Settings,
        legacy_checked: MutableSet[str],
    ) -> None:
        self.kube = kube
        self.keys = keys
        self.owner = owner
        self.identities = identities
        """The other Nodes' IDs by name (their status), for the config's member directory."""
        self.settings = settings
        self.legacy_checked = legacy_checked
        """The Nodes (by UID) already rid of an earlier operator's Deployment: kept by the
        caller, as a driver is made anew for every convergence and the upgrade happens once."""
        self._desired: DesiredState | None = None
        self._live: dict[str, dict[str, Any]] = {}
        """The children as the API last returned them, by kind (reused by an ``observe``
        right after ``apply``: no second read)."""

    def prepare(self, desired: DesiredState) -> None:
        self._desired = desired

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {}

    async def _built(self, node: Resource) -> tuple[children.NodeChildren, Identity]:
        """The children the builders make now, for the key in the Node's Secret (or a new one
        when it has none yet)."""
        identity = await self.keys.get(self.owner.namespace, node.name) or Identity.generate()
        assert self._desired is not None
        cluster = children.Cluster(self._desired, {**self.identities, node.name: identity.node_id})
        try:
            made = children.node_children(
                node, self.owner, cluster, pem_of(identity), identity.node_id, self.settings
            )
        except ValueError as exc:
            raise PermanentError(f"Node/{node.name}: {exc}", reason="Invalid") from exc
        return made, identity

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        node = self._desired.get("Node", key.name) if self._desired is not None else None
        if node is None:
            return Live(exists=applied is not None, ready=False, reason="Unknown")
        made, identity = await self._built(node)
        drift: list[Drift] = []
        for wanted in made.all():
            kind = str(wanted["kind"])
            live = self._live.get(kind) or await self.kube.get(path_for(wanted))
            if live is None:
                drift.append(Drift(DriftKind.MISSING, f"its {kind} is missing"))
                continue
            self._live[kind] = live
            if kind == "Secret":
                continue
            body = children.keep_immutable(wanted, live) if kind == "StatefulSet" else wanted
            if not contains(
                live, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
            ):
                drift.append(
                    Drift(
                        DriftKind.OUTDATED, f"its {kind} differs from what the network now derives"
                    )
                )
        status = self._status(node, identity.node_id, await self._node_host(node))
        if len(drift) == len(made.all()):
            return Live(False, tuple(drift), status, False, "NotCreated")
        return self._readiness(tuple(drift), status)

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        self._live = {}
        await self._retire_legacy_deployment()
        made, identity = await self._built(resource)
        for wanted in made.all():
            kind = str(wanted["kind"])
            if kind == "Secret":
                live = await self.kube.ensure(wanted, immutable=True)
                self.keys.remember(self.owner.namespace, resource.name, identity)
            elif kind == "StatefulSet":
                live = await self.kube.ensure(wanted, keep=children.keep_immutable)
            else:
                live = await self.kube.ensure(wanted)
            self._live[kind] = live
        status = self._status(resource, identity.node_id)
        return Outcome(status=status, message=f"children of {resource.name} applied")

    async def _retire_legacy_deployment(self) -> None:
        """Delete the Deployment an earlier operator ran this Node in, when there is one and
        the Node owns it (a Deployment of that name owned by something else is left alone).
        Looked for once per Node and operator process: one GET at the first convergence."""
        if self.owner.uid in self.legacy_checked:
            return
        path = path_of("apps/v1", "deployments", self.owner.namespace, self.legacy_name)
        legacy = await self.kube.get(path)
        owners = ((legacy or {}).get("metadata") or {}).get("ownerReferences") or ()
        if any(ref.get("uid") == self.owner.uid for ref in owners):
            await self.kube.delete(path)
        self.legacy_checked.add(self.owner.uid)

    @property
    def legacy_name(self) -> str:
        """The name an earlier operator gave the Node's Deployment."""
        return children.object_name(self.owner.name)

    async def _node_host(self, node: Resource) -> str | None:
        """For a ``NodePort`` Service: the outside host of the Kubernetes node running the
        node's pod (its ``spec.nodeName``); None for other types (no API call), and while the
        pod is not scheduled."""
        if children.expose_type(node.spec) != "NodePort":
            return None
        pod_path = path_of("v1", "pods", self.owner.namespace, children.pod_name(node.name))
        pod = await self.kube.get(pod_path)
        scheduled_on = ((pod or {}).get("spec") or {}).get("nodeName")
        if not scheduled_on:
            return None
        kubernetes_node = await self.kube.get(f"/api/v1/nodes/{scheduled_on}")
        return children.node_host_of(kubernetes_node) if kubernetes_node else None

    def _status(self, node: Resource, node_id: str, node_host: str | None = None) -> dict[str, Any]:
        """``identity``, ``service`` and the addresses the Service gives (a ``NodePort``
        Service's at ``node_host``)."""
        ports = children.ports_of(node.spec)
        host = children.service_host(node.name, self.owner.namespace, self.settings)
        status: dict[str, Any] = {"identity": node_id, "service": f"{host}:{ports.public}"}
        service = self._live.get("Service")
        if service is None:
            return status
        address = children.advertised_address(service, ports, node_host)
        if address:
            status["address"] = address
        cluster_ip = (service.get("spec") or {}).get("clusterIP")
        if (service.get("spec") or {}).get("type", "ClusterIP") == "ClusterIP" and cluster_ip:
            for field, port in (
                ("privateAddress", ports.private),
                ("ephemeralAddress", ports.ephemeral),
            ):
                if port and cluster_ip != "None":
                    status[field] = format_address(str(cluster_ip), port)
        return status

    def _readiness(self, drift: tuple[Drift, ...], status: dict[str, Any]) -> Live:
        workload = self._live.get("StatefulSet") or {}
        if children.workload_ready(workload):
            where = status.get("address", status["service"])
            return Live(True, drift, status, True, "Running", f"serving on {where}")
        return Live(
            True, drift, status, False, "Starting", "waiting for the node's pod to be ready"
        )

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        """Nothing to do: the children are owned by the Node, the cluster collects them."""
        return None

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        return False


__all__ = ["KubeNodeDriver"]
