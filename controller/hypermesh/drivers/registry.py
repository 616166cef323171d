"""TLD and Record resources converge through the registry's HTTP/3 API.

The registry is the network's registry node (located through the ``NodeDirectory`` port: where
it answers and the key it must prove) or a remote endpoint with its identity. Writes are signed
with the owner's key: the owner is a Node this controller runs, so the directory holds its key.
A TLD owned by a Peer cannot be written from here (its key is elsewhere): that is Stalled. A
TLD owned by a Node placed on another host is never handed to this driver: that host's
controller holds the key (``hypermesh.model.placement``). A registry node on another host is
located at its pinned address and key, and a public network without a registry uses the public
registry of the bootstrap data (``drivers.bootstrap``); a Record's target on another host is
found by its record in the network's node directory (``drivers.standalone``).

Every request proves the owner's key in the handshake too, reads included, so that the
registry's gates know which member asks (a public InterfacePolicy's ``from: nodes`` rules
match the controller's requests, its rate limits count them apart from strangers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypermesh.drivers.bootstrap import BootstrapError, load_bootstrap
from hypermesh.drivers.ports import Clock, NodeDirectory, SystemClock
from hypermesh.drivers.targets import owner_name, target_rrsets
from hypermesh.errors import (
    AwaitingPerson,
    HyperMeshError,
    PermanentError,
    TemporaryError,
    TransportError,
)
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Drift, DriftKind
from hypermesh.reconcile import ApplyContext, Live, Outcome
from hypermesh.registry.client import API, RegistryClient, tld_path
from hypermesh.registry.zones import RecordSet
from hypermesh.timefmt import parse_rfc3339
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from hypermesh.zonedata import ZoneDataError


class _Registry:
    """Where a network's registry is, and how to talk to it, through the node directory."""

    def __init__(self, directory: NodeDirectory) -> None:
        self.directory = directory

    async def endpoint(self, registry: Mapping[str, Any], namespace: str) -> PeerRef:
        if "node" in registry:
            found = await self.directory.locate(str(registry["node"]), namespace)
            if found is None:
                raise TemporaryError(
                    f"registry node {registry['node']!r} is not running", reason="RegistryDown"
                )
            return found
        if "endpoint" in registry:
            identity = registry.get("identity")
            return PeerRef(str(registry["endpoint"]), str(identity) if identity else None)
        raise PermanentError(
            "the network names no registry, and only a public network uses the public registry",
            reason="NoRegistry",
        )

    async def local_identity(self, node_id: str, namespace: str) -> Identity | None:
        """The key of the node of this controller whose ID is ``node_id``, if there is one."""
        try:
            return await self.directory.key_for(node_id, namespace)
        except HyperMeshError as exc:
            raise TemporaryError(str(exc), reason="OwnerKey") from exc

    async def reader(self, owner: Mapping[str, Any], namespace: str) -> Identity | None:
        """The key a read about a TLD proves: its owner's, when that is a Node of this
        controller whose key exists (else the read is anonymous)."""
        if "node" not in owner:
            return None
        try:
            return await self.directory.signer(str(owner["node"]), namespace)
        except HyperMeshError as exc:
            raise TemporaryError(str(exc), reason="OwnerKey") from exc

    async def owner_identity(self, owner: Mapping[str, Any], namespace: str) -> Identity:
        if "node" not in owner:
            raise PermanentError(
                f"the owner is Peer {owner.get('peer')!r}: its key is not on this machine, so "
                "this controller cannot sign for it",
                reason="OwnerKeyElsewhere",
            )
        found = await self.reader(owner, namespace)
        if found is None:
            raise TemporaryError(f"owner node {owner['node']!r} has no key yet", reason="OwnerKey")
        return found

    async def call(
        self,
        where: PeerRef,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        caller: Identity | None,
        signer: Identity | None = None,
        cosigner: Identity | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request, proving ``caller`` (a signed request proves its ``signer``)."""
        client = RegistryClient(where.address, where.node_id, identity=caller)
        try:
            return await client.call(method, path, body, signer=signer, cosigner=cosigner)
        except TransportError as exc:
            raise TemporaryError(str(exc), reason="RegistryDown") from exc


def _network_registry(
    desired: DesiredState, network: str, namespace: str = ""
) -> Mapping[str, Any]:
    """Network ``network``'s registry as ``spec.registry`` names it; for a public network
    that names none, the public registry of the bootstrap data (``$HM_BOOTSTRAP``)."""
    found = desired.get("Network", network, namespace)
    if found is None:
        raise PermanentError(f"Network {network!r} is not declared")
    registry = dict(found.spec.get("registry") or {})
    if not registry and found.spec.get("mode") == "public":
        try:
            return load_bootstrap().registry()
        except BootstrapError as exc:
            raise PermanentError(str(exc), reason="BadBootstrap") from None
    return registry


def _refused(status: int, data: Mapping[str, Any], what: str) -> Exception:
    message = f"{what}: the registry answered {status}: {data.get('error', data)}"
    if status >= 500:
        return TemporaryError(message, reason="RegistryError")
    return PermanentError(message, reason="Refused")


class TLDDriver:
    """Registers a TLD at its network's registry, owned by the declared owner's key."""

    kinds: tuple[str, ...] = ("TLD",)
    manages_world: bool = True

    def __init__(self, directory: NodeDirectory, clock: Clock | None = None) -> None:
        self.registry = _Registry(directory)
        self.clock = clock or SystemClock()

    def prepare(self, desired: DesiredState) -> None:
        return None

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {}

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        if not handle.get("registry"):
            return Live(exists=False, ready=False, reason="NotRegistered")
        try:
            where = await self.registry.endpoint(handle["registry"], key.namespace)
            reader = await self.registry.reader(handle.get("ownerRef", {}), key.namespace)
            status, data = await self.registry.call(where, "GET", tld_path(key.name), caller=reader)
        except TemporaryError as exc:
            return Live(exists=True, ready=False, reason=exc.reason, message=str(exc))
        if status == 404:
            return Live(
                exists=False,
                drift=(Drift(DriftKind.MISSING, "not registered at the registry"),),
                ready=False,
            )
        if data.get("owner") != handle.get("owner"):
            return Live(
                True,
                (Drift(DriftKind.OUTDATED, "owned by another key at the registry"),),
                {},
                False,
                "WrongOwner",
            )
        trouble = _standing(data, self.clock.now())
        if trouble is not None:
            return Live(
                True,
                (Drift(DriftKind.OUTDATED, trouble),),
                {"serial": data.get("serial")},
                False,
                "NotActive",
            )
        return Live(
            True,
            (),
            {"serial": data.get("serial"), "ds": data.get("ds")},
            True,
            "Registered",
            f"serial {data.get('serial')}",
        )

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        spec = resource.spec
        registry = _network_registry(context.desired, str(spec["network"]), resource.namespace)
        where = await self.registry.endpoint(registry, resource.namespace)
        owner = await self.registry.owner_identity(spec["owner"], resource.namespace)
        status, data = await self.registry.call(where, "GET", tld_path(resource.name), caller=owner)
        if status == 404:
            body = {
                "tld": resource.name,
                "network": spec["network"],
                "dnssec": spec.get("dnssec", True),
                "ttl": spec.get("ttl", 3600),
            }
            status, data = await self.registry.call(
                where, "POST", f"{API}/register", body, caller=owner, signer=owner
            )
            if status != 201:
                raise _refused(status, data, f"registering {resource.name!r}")
        elif status != 200:
            raise _refused(status, data, f"reading {resource.name!r}")
        if data.get("owner") != owner.node_id:
            data = await self._take_over(resource, data, where, owner)
        data = await self._keep_active(resource.name, data, where, owner)
        return Outcome(
            handle={"registry": registry, "owner": owner.node_id, "ownerRef": dict(spec["owner"])},
            status={"serial": data.get("serial"), "ds": data.get("ds"), "owner": owner.node_id},
            message=f"registered, serial {data.get('serial')}, DS {', '.join(data.get('ds', []))}",
        )

    async def _take_over(
        self, resource: Resource, data: dict[str, Any], where: PeerRef, owner: Identity
    ) -> dict[str, Any]:
        """The TLD belongs to another key: when that key is one of this controller's nodes (the
        manifest's owner changed, or someone transferred it by hand), transfer it to the
        declared owner, signed by the holder and cosigned by the new owner."""
        name = resource.name
        holder = await self.registry.local_identity(str(data.get("owner")), resource.namespace)
        if holder is None:
            raise PermanentError(
                f"{name!r} is registered to another key ({data.get('owner')})",
                reason="TakenByAnother",
            )
        body = {"tld": name, "newOwner": owner.node_id}
        status, moved = await self.registry.call(
            where, "POST", f"{API}/transfer", body, caller=holder, signer=holder, cosigner=owner
        )
        if status != 200:
            raise _refused(status, moved, f"transferring {name!r} to its declared owner")
        return moved

    async def _keep_active(
        self, name: str, data: dict[str, Any], where: PeerRef, owner: Identity
    ) -> dict[str, Any]:
        """Renew a registration close to its end; refuse to pretend about any other state."""
        state, note = data.get("status"), data.get("note") or ""
        if state == "pending":
            raise AwaitingPerson(
                f"{name!r} awaits the registry administrator's approval: they run "
                f"`hmctl registry approve {name}`; the next apply (or pass of hmctl up) goes on",
                reason="AwaitingApproval",
            )
        if state == "rejected":
            raise PermanentError(
                f"the registry's administrator rejected {name!r}: {note}", reason="Rejected"
            )
        if state == "expired":
            raise PermanentError(
                f"{name!r} has expired at the registry ({note}); renew it with "
                f"hmctl registry renew {name}",
                reason="Expired",
            )
        if _standing(data, self.clock.now()) is None:
            return data
        status, renewed = await self.registry.call(
            where, "POST", f"{API}/renew", {"tld": name}, caller=owner, signer=owner
        )
        if status != 200:
            raise _refused(status, renewed, f"renewing {name!r}")
        return renewed

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        if not handle.get("registry"):
            return
        where = await self.registry.endpoint(handle["registry"], key.namespace)
        owner = await self.registry.owner_identity(handle.get("ownerRef", {}), key.namespace)
        status, data = await self.registry.call(
            where, "POST", f"{API}/delete", {"tld": key.name}, caller=owner, signer=owner
        )
        if status not in (200, 404):
            raise _refused(status, data, f"deleting {key.name!r}")

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        return False


RENEW_BEFORE = 30 * 86400
"""The controller renews a TLD it owns when less than this many seconds of its term remain."""


def _standing(data: Mapping[str, Any], now: float) -> str | None:
    """What is wrong with a registration the controller keeps, or None when nothing is."""
    if data.get("status") != "active":
        note = f": {data['note']}" if data.get("note") else ""
        return f"{data.get('status')} at the registry{note}"
    expires = parse_rfc3339(data.get("expiresAt"))
    if expires is None:
        return None
    left = expires.timestamp() - now
    if left < RENEW_BEFORE:
        return f"expires in {max(left, 0) / 86400:.1f} days; renewing"
    return None


class RecordDriver:
    """Publishes a Record's record sets in its TLD's zone (a target expands to HTTPS, A/AAAA
    and TLSA from the target node's live address and key)."""

    kinds: tuple[str, ...] = ("Record",)
    manages_world: bool = True

    def __init__(self, directory: NodeDirectory, clock: Clock | None = None) -> None:
        self.registry = _Registry(directory)
        self.clock = clock or SystemClock()

    def prepare(self, desired: DesiredState) -> None:
        return None

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {}

    async def _rrsets(self, resource: Resource, tld: Resource) -> list[RecordSet]:
        spec = resource.spec
        name = owner_name(resource.name, spec)
        ttl = int(spec.get("ttl", tld.spec.get("ttl", 3600)))
        if "target" in spec:
            node = str(spec["target"]["node"])
            found = await self.registry.directory.locate(node, resource.namespace)
            if found is None or found.node_id is None:
                raise TemporaryError(f"target node {node!r} is not running", reason="TargetDown")
            sets = target_rrsets(name, ttl, found.address, found.node_id)
        else:
            sets = [RecordSet(name, str(spec["type"]), ttl, tuple(spec["values"]))]
        try:  # in the registry's canonical form, so what it stores compares equal
            return [rrset.canonical(f"{tld.name}.") for rrset in sets]
        except ZoneDataError as exc:
            raise PermanentError(f"{resource.name}: {exc}", reason="InvalidRecord") from None

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        if not handle.get("registry"):
            return Live(exists=False, ready=False, reason="NotPublished")
        try:
            where = await self.registry.endpoint(handle["registry"], key.namespace)
            reader = await self.registry.reader(handle.get("ownerRef", {}), key.namespace)
            status, data = await self.registry.call(
                where, "GET", tld_path(handle["tld"]), caller=reader
            )
        except TemporaryError as exc:
            return Live(exists=True, ready=False, reason=exc.reason, message=str(exc))
        if status != 200:
            return Live(
                exists=False,
                drift=(Drift(DriftKind.MISSING, "the TLD is gone from the registry"),),
                ready=False,
            )
        live = {(r["name"], r["type"]): r for r in data.get("rrsets", [])}
        for want in handle.get("rrsets", []):
            got = live.get((want["name"], want["type"]))
            if got is None or got["values"] != want["values"] or got["ttl"] != want["ttl"]:
                differs = f"{want['name']} {want['type']} differs at the registry"
                return Live(True, (Drift(DriftKind.OUTDATED, differs),), {}, True)
        return Live(True, (), {"serial": data.get("serial")}, True, "Published")

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        tld = context.desired.get("TLD", str(resource.spec["tld"]), resource.namespace)
        if tld is None:
            raise PermanentError(f"TLD {resource.spec['tld']!r} is not declared")
        registry = _network_registry(context.desired, str(tld.spec["network"]), tld.namespace)
        where = await self.registry.endpoint(registry, resource.namespace)
        owner = await self.registry.owner_identity(tld.spec["owner"], resource.namespace)
        rrsets = await self._rrsets(resource, tld)
        wanted = {(r.name, r.type) for r in rrsets}
        stale = [r for r in handle.get("rrsets", []) if (r["name"], r["type"]) not in wanted]
        changes = [{**r.to_dict(), "changetype": "REPLACE"} for r in rrsets] + [
            {"name": r["name"], "type": r["type"], "changetype": "DELETE"} for r in stale
        ]
        status, data = await self.registry.call(
            where,
            "POST",
            f"{API}/rrsets",
            {"tld": tld.name, "rrsets": changes},
            caller=owner,
            signer=owner,
        )
        if status != 200:
            raise _refused(status, data, f"publishing {resource.name!r}")
        published = [r.to_dict() for r in rrsets]
        return Outcome(
            handle={
                "registry": registry,
                "tld": tld.name,
                "ownerRef": dict(tld.spec["owner"]),
                "rrsets": published,
            },
            status={"serial": data.get("serial"), "rrsets": [f"{r.name} {r.type}" for r in rrsets]},
            message=f"published {len(rrsets)} record set(s), serial {data.get('serial')}",
        )

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        if not handle.get("registry"):
            return
        where = await self.registry.endpoint(handle["registry"], key.namespace)
        owner = await self.registry.owner_identity(handle.get("ownerRef", {}), key.namespace)
        changes = [
            {"name": r["name"], "type": r["type"], "changetype": "DELETE"}
            for r in handle.get("rrsets", [])
        ]
        status, data = await self.registry.call(
            where,
            "POST",
            f"{API}/rrsets",
            {"tld": handle["tld"], "rrsets": changes},
            caller=owner,
            signer=owner,
        )
        if status not in (200, 404):
            raise _refused(status, data, f"withdrawing {key.name!r}")

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        return False
