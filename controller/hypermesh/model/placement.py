"""Placement: which host runs which Node, and who acts on each resource.

A controller runs for one host (``hmctl controller run --host NAME``, or ``$HM_HOST``). A Node
is LOCAL when its ``spec.host`` is that host (a Node without ``spec.host`` and a controller
without a host count as equal); every other Node is REMOTE: a member of its network that this
controller never starts, stops or prunes. The rule for the other resources is the key their
writes need: a TLD (and its Records) is acted on by the controller of its owner node's host;
elsewhere it is left alone, with a status that says where it is converged.

Pure: a desired state and a host in, verdicts out. Without ``--host`` and ``spec.host`` every
Node is local and nothing is remote, so a single-host network behaves as it always has.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.transport.address import format_address, parse_address

__all__ = [
    "REMOTE",
    "Placement",
    "node_host",
    "reachable_address",
    "registry_node",
]

REMOTE = "Remote"
"""The Ready reason of a resource another host's controller converges."""

_WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104 (compared, never bound)


def node_host(node: Resource | Mapping[str, Any]) -> str | None:
    """The host a Node is placed on (``spec.host``), None when it names none."""
    spec = node.spec if isinstance(node, Resource) else node
    host = spec.get("host")
    return str(host) if host else None


def reachable_address(node: Resource) -> str | None:
    """Where other hosts reach ``node``'s public interface: ``advertise[0]``, else its
    ``listen`` when that names a concrete host (not a wildcard) and a port other than 0;
    None when neither does (the address is known only from its record in the directory)."""
    advertise = node.spec.get("advertise") or ()
    if advertise:
        return str(advertise[0])
    try:
        host, port = parse_address(str(node.spec.get("listen", "")))
    except ValueError:
        return None
    if port == 0 or _is_wildcard(host):
        return None
    return format_address(host, port)


def _is_wildcard(host: str) -> bool:
    try:
        return str(ipaddress.ip_address(host)) in _WILDCARDS
    except ValueError:
        return False


def registry_node(desired: DesiredState, network: str, namespace: str = "") -> Resource | None:
    """The Node that is Network ``network``'s registry (``spec.registry.node``), if any."""
    found = desired.get("Network", network, namespace)
    registry = (found.spec.get("registry") or {}) if found is not None else {}
    name = registry.get("node")
    return desired.get("Node", str(name), namespace) if name else None


@dataclass(frozen=True, slots=True)
class Placement:
    """The host a controller runs for (None: a controller started without ``--host``)."""

    host: str | None = None

    def is_local(self, node: Resource | Mapping[str, Any]) -> bool:
        """Whether this controller runs ``node`` (both hosts unset count as equal)."""
        return node_host(node) == self.host

    def local_nodes(self, desired: DesiredState) -> list[Resource]:
        return [n for n in desired.of_kind("Node") if self.is_local(n)]

    def remote(self, desired: DesiredState) -> dict[ResourceKey, str]:
        """Every resource another host's controller converges, with the words its status
        says: Nodes placed elsewhere; TLDs whose owner node is remote; the Records of those.
        A TLD owned by a Peer is not placed (its key is on no host of these manifests): the
        TLD driver says so, as it always has."""
        out: dict[ResourceKey, str] = {}
        for node in desired.of_kind("Node"):
            if not self.is_local(node):
                out[node.key] = (
                    f"runs on host {_name(node_host(node))}; started by that host's controller"
                )
        tlds: dict[str, str] = {}
        for tld in desired.of_kind("TLD"):
            owner = str((tld.spec.get("owner") or {}).get("node") or "")
            holder = desired.get("Node", owner, tld.namespace) if owner else None
            if holder is not None and not self.is_local(holder):
                message = (
                    f"owned by node {owner} on host {_name(node_host(holder))}; "
                    "converged by that host's controller"
                )
                out[tld.key] = message
                tlds[tld.name] = message
        for record in desired.of_kind("Record"):
            why = tlds.get(str(record.spec.get("tld")))
            if why is not None:
                out[record.key] = f"its TLD {record.spec.get('tld')} is {why}"
        return out

    def split(self, desired: DesiredState) -> tuple[DesiredState, dict[ResourceKey, str]]:
        """The resources this controller converges, and the remote ones with their words."""
        remote = self.remote(desired)
        if not remote:
            return desired, remote
        return DesiredState.of((r for r in desired if r.key not in remote), desired.files), remote

    def describe(self) -> str:
        return f"host {self.host}" if self.host else "no host (--host not given)"


def _name(host: str | None) -> str:
    return host if host else "(unnamed: a controller without --host)"


def hosts_of(nodes: Iterable[Resource]) -> set[str | None]:
    """The hosts a set of Nodes is placed on."""
    return {node_host(n) for n in nodes}
