"""Which resources a resource depends on: the edges that order a plan."""

from __future__ import annotations

from hypermesh.model.resources import Resource, ResourceKey


def dependencies(resource: Resource) -> list[ResourceKey]:
    """The keys ``resource`` refers to; each must be converged before it."""
    spec = resource.spec
    ns = resource.namespace
    out: list[ResourceKey] = []
    if resource.kind != "Network" and isinstance(spec.get("network"), str):
        out.append(ResourceKey("Network", spec["network"], ns))
    if resource.kind == "TLD":
        owner = spec.get("owner", {})
        if "node" in owner:
            out.append(ResourceKey("Node", owner["node"], ns))
        if "peer" in owner:
            out.append(ResourceKey("Peer", owner["peer"], ns))
    elif resource.kind == "Record":
        out.append(ResourceKey("TLD", spec["tld"], ns))
        target = spec.get("target")
        if target and "node" in target:
            out.append(ResourceKey("Node", target["node"], ns))
    return out
