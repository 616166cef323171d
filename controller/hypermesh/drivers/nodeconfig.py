"""What a node's config takes from the rest of its network: the members and their keys, the
interface policies, the registries of federated networks. One derivation for every way nodes
run — processes on this machine (``drivers.processes``) and pods on a cluster (the operator) —
which differ only in where a node listens, how a member's key is found and how a registry is
reached; those come in as arguments."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from hypermesh.model.resources import DesiredState, Resource
from hypermesh.node.config import (
    RESOLVER_LISTEN,
    SYSTEM_RESOLV_CONF,
    Federated,
    ResolverConfig,
    TlsConfig,
    Upstream,
)
from hypermesh.transport.address import PeerRef

IdentityOf = Callable[[Resource], str | None]
"""A Node of the network → its node ID (None: not known yet; it is left out)."""
RegistryUpstream = Callable[[Mapping[str, Any]], Upstream | None]
"""A Network's ``spec.registry`` → where that registry answers (None: nowhere yet)."""


def interfaces_of(
    node: Resource,
    desired: DesiredState,
    *,
    identity_of: IdentityOf,
    registry_upstream: RegistryUpstream,
    private_listen: str,
    ephemeral_listen: str,
) -> dict[str, Any]:
    """The NodeConfig fields the interface gates need: for a private interface, where it
    listens and the private InterfacePolicy; for an ephemeral interface (or role relay), the
    same for tunnels; for a public InterfacePolicy, its spec; for any of them, the network's
    members by node ID and the registries of federated networks. A registry node gets the
    members too: it publishes them in its anchors, for the networks federated with its own.
    A Node with ``spec.resolver`` gets its stub resolver's config too (``resolver_of``), and
    one with ``spec.tls`` its certified TLS listener's (``tls_of``), and one with ``spec.dns``
    its DNS workers' (``dns_of``)."""
    resolver, tls = resolver_of(node.spec), tls_of(node.spec)
    gates = _gates_of(
        node,
        desired,
        identity_of=identity_of,
        registry_upstream=registry_upstream,
        private_listen=private_listen,
        ephemeral_listen=ephemeral_listen,
    )
    own = {key: value for key, value in (("resolver", resolver), ("tls", tls)) if value is not None}
    return {**gates, **own, **dns_of(node.spec)}


def dns_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The NodeConfig fields of the DNS workers ``spec.dns`` asks for (``dns_workers``,
    ``dns_listen``); none without it. The schema has checked the fields."""
    wanted = spec.get("dns") or {}
    out: dict[str, Any] = {}
    if int(wanted.get("workers", 1)) > 1:
        out["dns_workers"] = int(wanted["workers"])
    if wanted.get("listen") is not None:
        out["dns_listen"] = str(wanted["listen"])
    return out


def resolver_of(spec: Mapping[str, Any]) -> ResolverConfig | None:
    """The stub resolver ``spec.resolver`` asks for (its defaults filled in); None without
    one. The schema has checked the fields."""
    wanted = spec.get("resolver")
    if wanted is None:
        return None
    upstreams = wanted.get("upstreams")
    return ResolverConfig(
        listen=str(wanted.get("listen", RESOLVER_LISTEN)),
        upstreams=tuple(str(u) for u in upstreams) if upstreams is not None else None,
        resolv_conf=str(wanted.get("resolvConf", SYSTEM_RESOLV_CONF)),
        forward=bool(wanted.get("forward", True)),
    )


def tls_of(spec: Mapping[str, Any]) -> TlsConfig | None:
    """The TLS listener with the operator's certificate ``spec.tls`` asks for; None without
    one. The schema has checked the fields; the files are read by the node when it starts
    (paths on the node's host, or inside its pod)."""
    wanted = spec.get("tls")
    if wanted is None:
        return None
    listen = wanted.get("listen")
    return TlsConfig(
        certificate=str(wanted["certificate"]),
        key=str(wanted["key"]),
        listen=str(listen) if listen is not None else None,
    )


def _gates_of(
    node: Resource,
    desired: DesiredState,
    *,
    identity_of: IdentityOf,
    registry_upstream: RegistryUpstream,
    private_listen: str,
    ephemeral_listen: str,
) -> dict[str, Any]:
    spec = node.spec
    network_name = spec.get("network")
    network = desired.get("Network", str(network_name), node.namespace)
    roles = spec.get("roles", ())
    private = "private" in spec.get("interfaces", ())
    ephemeral = "ephemeral" in spec.get("interfaces", ()) or "relay" in roles

    def policy_for(interface: str) -> dict[str, Any] | None:
        return next(
            (
                json.loads(json.dumps(p.spec))
                for p in desired.of_kind("InterfacePolicy")
                if p.spec.get("network") == network_name and p.spec.get("interface") == interface
            ),
            None,
        )

    public_policy = policy_for("public")
    if not (private or ephemeral or public_policy or "registry" in roles):
        return {}
    directory: dict[str, dict[str, Any]] = {}
    for other in desired.of_kind("Node"):
        if other.spec.get("network") == network_name:
            node_id = identity_of(other)
            if node_id is not None:
                directory[other.name] = {
                    "kind": "Node",
                    "identity": node_id,
                    "tags": list(other.spec.get("tags", ())),
                }
    for peer in desired.of_kind("Peer"):
        if peer.spec.get("network") == network_name and peer.spec.get("identity"):
            directory[peer.name] = {
                "kind": "Peer",
                "identity": str(peer.spec["identity"]),
                "tags": list(peer.spec.get("tags", ())),
            }
    out: dict[str, Any] = {"directory": directory, "public_policy": public_policy}
    federation: list[Federated] = []
    for item in network.spec.get("federation", []) if network else []:
        remote = item.get("registry")
        if remote:
            upstream: Upstream | None = Upstream(
                PeerRef(str(remote["endpoint"]), str(remote["identity"]))
            )
        else:
            other_network = desired.get("Network", str(item.get("network")), node.namespace)
            upstream = registry_upstream(
                dict((other_network.spec.get("registry") or {}) if other_network else {})
            )
        if upstream is not None:
            federation.append(Federated(str(item["name"]), upstream))
    if federation and (private or ephemeral or public_policy):
        out["federation"] = tuple(federation)
    if private:
        out["private_listen"] = private_listen
        out["private_policy"] = policy_for("private")
    if ephemeral:
        out["ephemeral_listen"] = ephemeral_listen
        out["ephemeral_policy"] = policy_for("ephemeral")
    return out
