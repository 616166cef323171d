"""Drivers for kinds that run nothing locally: Network and Peer are recorded as declared (an
ephemeral Network also keeps when it was created and when it expires). A Network's readiness and
member counts come from its members after every pass (``reconcile.summary``), never from here.
InterfacePolicy has its own driver (``drivers.policies``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from hypermesh.errors import PermanentError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Drift, DriftKind
from hypermesh.plan.expiry import expires_at
from hypermesh.policy import parse_duration
from hypermesh.reconcile import ApplyContext, Live, Outcome
from hypermesh.timefmt import parse_rfc3339, rfc3339


class _Declarative:
    kinds: tuple[str, ...] = ()
    manages_world: bool = False

    def prepare(self, desired: DesiredState) -> None:
        return None

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
    """A network is a name the nodes share; standalone mode has nothing to start for it.

    An ephemeral network's handle keeps ``createdAt``, the moment it was first applied, so that
    its ``expiresAt`` (``createdAt + spec.ttl``) survives passes and hmctl invocations; the
    reconciler tears the network down once that moment has passed (``hypermesh.plan.expiry``).
    """

    kinds: tuple[str, ...] = ("Network",)

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        """Wall-clock seconds (``time.time``); a test passes its own."""

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        if applied is None or applied.get("mode") != "ephemeral":
            return Live(exists=applied is not None, reason="Declared")
        times = _lifetime(applied, handle)
        if times is None:  # applied by an hmctl that did not record the creation time
            return Live(
                exists=True,
                drift=(Drift(DriftKind.INCOMPLETE, "no creation time recorded"),),
                reason="Declared",
            )
        return Live(True, (), times, True, "Declared", f"expires at {times['expiresAt']}")

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        spec = resource.spec
        # Its members are counted from what runs, after every pass (``reconcile.summary``).
        status: dict[str, Any] = {"mode": spec["mode"]}
        message = f"{spec['mode']} network"
        if spec["mode"] != "ephemeral":
            return Outcome(status=status, message=message)
        created = handle.get("createdAt") or rfc3339(datetime.fromtimestamp(self.clock(), UTC))
        times = _lifetime(spec, {"createdAt": created})
        if times is None:
            raise PermanentError(f"not a duration: spec.ttl {spec.get('ttl')!r}", reason="BadTTL")
        return Outcome(
            handle={"createdAt": created},
            status=status | times,
            message=f"{message}; expires at {times['expiresAt']} (ttl {spec['ttl']})",
        )


def _lifetime(spec: Mapping[str, Any], handle: Mapping[str, Any]) -> dict[str, str] | None:
    """``createdAt`` and ``expiresAt`` of an ephemeral network, or None when unknown."""
    created = parse_rfc3339(handle.get("createdAt"))
    try:
        ttl = parse_duration(str(spec.get("ttl", "")))
    except ValueError:
        return None
    if created is None:
        return None
    return {"createdAt": rfc3339(created), "expiresAt": rfc3339(expires_at(created, ttl))}


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
