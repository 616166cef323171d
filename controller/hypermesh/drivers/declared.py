"""Drivers for kinds that run nothing locally yet: Network and Peer are recorded as declared;
TLD, Record and InterfacePolicy wait for the registry and the policy engine (honest gaps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypermesh.errors import NotImplementedYet
from hypermesh.model.resources import Resource, ResourceKey
from hypermesh.reconcile import ApplyContext, Live, Outcome

_LATER = {
    "TLD": "the registry that registers TLDs is not built yet (issue 3)",
    "Record": "the registry that serves records is not built yet (issue 3)",
    "InterfacePolicy": "the policy engine that enforces interfaces is not built yet (issue 6)",
}


class _Declarative:
    kinds: tuple[str, ...] = ()
    manages_world: bool = False

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {}

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        return Live(exists=applied is not None, reason="Declared")

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        return None

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        return False


class NetworkDriver(_Declarative):
    """A network is a name the nodes share; standalone mode has nothing to start for it."""

    kinds: tuple[str, ...] = ("Network",)

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        spec = resource.spec
        members = [
            n.name
            for n in context.desired.of_kind("Node")
            if n.spec.get("network") == resource.name
        ]
        message = f"{spec['mode']} network with {len(members)} node(s)"
        if spec["mode"] == "ephemeral":
            message += "; TTL teardown is not enforced yet (issue 6)"
        return Outcome(status={"mode": spec["mode"], "nodes": len(members)}, message=message)


class PeerDriver(_Declarative):
    """A peer is run by somebody else: we record its identity and address (not probed yet)."""

    kinds: tuple[str, ...] = ("Peer",)

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        spec = resource.spec
        return Outcome(
            status={"identity": spec["identity"], "address": spec["address"]},
            message="declared (peers are not probed yet)",
        )


class NotImplementedDriver(_Declarative):
    """Validated and planned, never reported as done: apply stalls with reason NotImplemented."""

    def __init__(self, kind: str) -> None:
        self.kinds = (kind,)

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        return Live(exists=False, ready=False, reason="NotImplemented")

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        raise NotImplementedYet(
            f"{resource.kind} is validated and planned, but {_LATER[resource.kind]}"
        )
