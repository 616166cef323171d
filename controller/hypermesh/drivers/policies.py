"""InterfacePolicy: recorded as applied (each node gets the policy in its config), then checked
against what the nodes really do by a live probe.

The probe calls each running node of the policy's network on the policy's interface (private:
the node's private endpoint; public: its QUIC endpoint) as each other Node of the network,
proving that node's key (the controller holds every node's key), and as an anonymous caller.
For each operation it sends one request that changes nothing even when allowed (``PROBES``), and
compares the answer with what the node's own gate decides for that caller under the policy
(``PrivateGate`` / ``PublicGate``, the same code the node runs): refused means 403 or 429,
anything else means the request reached a handler. A difference is a mismatch, and a policy with
a mismatch is not Ready.

Never probed: the target's own key (its gate never refuses it), Peers (their keys are elsewhere),
requests the policy allows under a rate limit (a probe would spend the caller's budget), and,
on the ephemeral interface, the requests tunnels deliver (only ``tunnel.relay``, the tunnel
endpoint itself, is probed there). A pass sends at most ``ProbeSettings.max_probes``
requests, each bounded by ``timeout``, ``concurrency`` connections at a time, all within
``deadline``.

Planning probes and judging answers is pure (``plan_probes``, ``judge``); only ``run_probes``
does I/O.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dns.message
import dns.rdatatype

from hypermesh.drivers.ports import NodeDirectory
from hypermesh.errors import HyperMeshError, TemporaryError, TransportError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.node.interfaces import PrivateGate, PublicGate
from hypermesh.policy import Verdict
from hypermesh.reconcile import ApplyContext, Condition, Live, Outcome
from hypermesh.timefmt import rfc3339
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity

ENFORCED = "Enforced"
"""The condition a probed policy carries: True when every probe matched the policy."""
ANONYMOUS = ""
"""The caller name of a probe that proves no key."""
REFUSED = (403, 429)
REVOKED = "revoked"
"""The answer of a probe whose caller's key the registry has revoked: not compared."""
"""Answers that mean the gate refused the request; anything else reached a handler."""
MAX_LISTED = 20
"""Mismatches listed in the status (the message and the count say how many there are)."""


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One harmless request for an operation: allowed, it is answered by a handler that changes
    nothing (a read, or a write refused for its empty, unsigned body)."""

    method: str
    path: str
    body: bytes = b""


def dns_probe_path(network: str) -> str:
    """``GET /dns-query`` (RFC 8484) asking for the SOA of the network's name."""
    wire = dns.message.make_query(f"{network}.", dns.rdatatype.SOA, id=0).to_wire()
    return "/dns-query?dns=" + base64.urlsafe_b64encode(wire).decode().rstrip("=")


def probe_requests(network: str) -> dict[str, ProbeRequest]:
    """The request sent for each probed operation (``operation_of`` maps each back to it)."""
    return {
        "status.read": ProbeRequest("GET", "/status"),
        "dns.query": ProbeRequest("GET", dns_probe_path(network)),
        "chain.read": ProbeRequest("GET", "/chain/v1/head"),
        "chain.write": ProbeRequest("POST", "/chain/v1/append"),  # unsigned: 401
        "message.send": ProbeRequest("POST", "/message/v1/inbox"),  # not a sealed message: 400
        "registry.write": ProbeRequest("POST", "/registry/v1/rrsets"),  # unsigned: 401
    }


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """How much one probe pass may do."""

    max_probes: int = 256
    """Requests sent in one pass at most; the rest are skipped, with a note."""
    timeout: float = 1.5
    """Seconds for one handshake and for one request."""
    concurrency: int = 8
    """Connections (one caller to one node) open at once."""
    deadline: float = 20.0
    """Seconds for the whole pass; what is not answered by then counts as failed."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One request to send, and what the node's gate should answer."""

    caller: str
    """The calling Node, or ``ANONYMOUS``."""
    target: str
    """The Node probed."""
    peer: PeerRef
    """Where the target serves the interface probed, and the key it must prove there."""
    interface: str
    operation: str
    verdict: tuple[int, str]
    """The gate's verdict: ``(0, "")`` allowed, else the status and why."""

    @property
    def label(self) -> str:
        return f"{self.caller or 'anonymous'} → {self.target} {self.interface} {self.operation}"


@dataclass(frozen=True, slots=True)
class ProbePlan:
    probes: tuple[Probe, ...]
    skipped: int = 0
    """Probes not sent: over ``max_probes``, or allowed under a rate limit."""
    notes: tuple[str, ...] = ()


def plan_probes(
    spec: Mapping[str, Any],
    directory: Mapping[str, Mapping[str, Any]],
    targets: Mapping[str, PeerRef],
    callers: Sequence[str],
    operations: Sequence[str],
    max_probes: int,
) -> ProbePlan:
    """Which requests to send, with each gate's expected verdict. ``directory`` is what the
    nodes' configs hold ({name: {kind, identity, tags}}); ``callers`` are the Nodes whose keys
    the controller holds (anonymous is always added); ``targets`` the running nodes to probe, by
    name, where they serve the policy's interface."""
    interface = str(spec["interface"])
    probes: list[Probe] = []
    rate_limited = 0
    for target, peer in sorted(targets.items()):
        gate: PrivateGate | PublicGate
        if interface == "private":
            gate = PrivateGate.of(target, directory, spec)
        else:
            gate = PublicGate.of(target, directory, spec)
        for caller in [ANONYMOUS, *sorted(c for c in callers if c != target)]:
            caller_id = str(directory[caller]["identity"]) if caller else None
            for operation in operations:
                verdict = gate.check(caller_id, "probe", operation)
                if verdict[0] == 429 or (
                    not verdict[0] and _rate_limited(gate, caller, target, operation)
                ):
                    rate_limited += 1
                    continue
                probes.append(Probe(caller, target, peer, interface, operation, verdict))
    notes: list[str] = []
    if rate_limited:
        notes.append(
            f"{rate_limited} request(s) the policy allows under a rate limit were not probed "
            "(a probe would spend the caller's budget)"
        )
    over = max(0, len(probes) - max_probes)
    if over:
        notes.append(f"{over} probe(s) over the limit of {max_probes} per pass were skipped")
    return ProbePlan(tuple(probes[:max_probes]), rate_limited + over, tuple(notes))


def _rate_limited(gate: PrivateGate | PublicGate, caller: str, target: str, op: str) -> bool:
    """True when the policy lets ``caller`` do ``op`` only under a rate limit."""
    if gate.policy is None:
        return False
    decision = gate.policy.decide(caller, target, op)
    return decision.action is Verdict.ALLOW and decision.rate_limit is not None


def judge(probe: Probe, answer: int) -> str | None:
    """The mismatch, said for people, when the node's answer differs from the gate's verdict;
    None when they agree."""
    refused = answer in REFUSED
    if refused == bool(probe.verdict[0]):
        return None
    if refused:
        return f"{probe.label}: the policy allows, the node refused ({answer})"
    return f"{probe.label}: the policy denies, the node allowed ({answer})"


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What one probe pass found."""

    interface: str
    probes: int = 0
    """Requests answered and compared."""
    mismatches: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    """Requests that got no answer (the node did not answer in time, or the connection failed)."""
    skipped: int = 0
    notes: tuple[str, ...] = ()
    targets: int = 0

    @property
    def reason(self) -> str:
        if not self.targets:
            return "NoNodes"
        if self.mismatches:
            return "NotEnforced"
        if not self.probes:
            return "Unreachable"
        return ENFORCED

    @property
    def ready(self) -> bool:
        return self.reason == ENFORCED

    @property
    def message(self) -> str:
        reason = self.reason
        if reason == "NoNodes":
            return f"no running node of the network has a {self.interface} interface to probe"
        if reason == "Unreachable":
            first = f": {self.failed[0]}" if self.failed else ""
            return f"no probe was answered ({len(self.failed)} failed){first}"
        if reason == "NotEnforced":
            shown = "; ".join(self.mismatches[:3])
            more = len(self.mismatches) - 3
            return (
                f"the nodes do not enforce the policy: {len(self.mismatches)} of {self.probes} "
                f"probes differ: {shown}" + (f"; and {more} more" if more > 0 else "")
            )
        extra = f"; {len(self.failed)} unanswered" if self.failed else ""
        return (
            f"{self.probes} probes of {self.targets} node(s) on {self.interface} match the "
            f"policy{extra}"
        )

    def condition(self, generation: int) -> dict[str, Any]:
        status = {ENFORCED: "True", "NotEnforced": "False"}.get(self.reason, "Unknown")
        at = rfc3339(datetime.now(UTC))
        return Condition(ENFORCED, status, self.reason, self.message, generation).to_dict(at)

    def status(self, generation: int) -> dict[str, Any]:
        listed = list(self.mismatches[:MAX_LISTED])
        if len(self.mismatches) > MAX_LISTED:
            listed.append(f"… and {len(self.mismatches) - MAX_LISTED} more")
        return {
            "interface": self.interface,
            "probes": self.probes,
            "mismatches": listed,
            "unanswered": len(self.failed),
            "skipped": self.skipped,
            "notes": list(self.notes) + [f"unanswered: {f}" for f in self.failed[:3]],
            "conditions": [self.condition(generation)],
        }


def report(
    interface: str, plan: ProbePlan, answers: Mapping[Probe, int | str], targets: int
) -> ProbeReport:
    """Judge every answer (a status, or why there was none) of a pass."""
    mismatches: list[str] = []
    failed: list[str] = []
    revoked: set[str] = set()
    answered = 0
    for probe in plan.probes:
        answer = answers.get(probe, "not sent before the pass's deadline")
        if answer == REVOKED:
            revoked.add(probe.caller)
            continue
        if isinstance(answer, str):
            failed.append(f"{probe.label}: {answer}")
            continue
        answered += 1
        found = judge(probe, answer)
        if found is not None:
            mismatches.append(found)
    notes = tuple(plan.notes) + tuple(
        f"{caller}'s key is revoked at the registry: refused everywhere, not compared"
        for caller in sorted(revoked)
    )
    return ProbeReport(
        interface, answered, tuple(mismatches), tuple(failed), plan.skipped, notes, targets
    )


# -- I/O ------------------------------------------------------------------------------------


async def run_probes(
    plan: ProbePlan,
    keys: Mapping[str, Identity],
    requests: Mapping[str, ProbeRequest],
    settings: ProbeSettings,
) -> dict[Probe, int | str]:
    """Send the plan's requests, one connection per caller and node, ``settings.concurrency``
    at once; each answer is a status, or the reason there was none."""
    groups: dict[tuple[str, str], list[Probe]] = {}
    for probe in plan.probes:
        groups.setdefault((probe.caller, probe.target), []).append(probe)
    answers: dict[Probe, int | str] = {}
    bound = asyncio.Semaphore(max(1, settings.concurrency))

    async def one_connection(group: list[Probe]) -> None:
        peer, caller = group[0].peer, group[0].caller
        async with bound, contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(settings.timeout):
                    h3 = await stack.enter_async_context(
                        connect_h3(
                            peer.address,
                            expected_id=peer.node_id,
                            identity=keys.get(caller) if caller else None,
                        )
                    )
            except (TransportError, TimeoutError, OSError) as exc:
                why = str(exc) or f"no QUIC handshake within {settings.timeout:g}s"
                answers.update((p, f"connection failed: {why}") for p in group)
                return
            for probe in group:
                request = requests[probe.operation]
                try:
                    async with asyncio.timeout(settings.timeout):
                        status, _, body = await h3.request(
                            request.method, request.path, body=request.body
                        )
                except (TransportError, TimeoutError) as exc:
                    answers[probe] = str(exc) or f"no answer within {settings.timeout:g}s"
                else:
                    # A revoked key is refused whatever the policy says (node/interfaces.py).
                    revoked = status == 403 and b"revoked at the registry" in body
                    answers[probe] = REVOKED if revoked else status

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(settings.deadline):
            await asyncio.gather(*(one_connection(g) for g in groups.values()))
    return answers


class PolicyDriver:
    """Records an InterfacePolicy and probes its enforcement on the running nodes, found and
    called through the node directory (the keys it holds are the callers)."""

    kinds: tuple[str, ...] = ("InterfacePolicy",)
    manages_world: bool = False

    def __init__(self, directory: NodeDirectory, settings: ProbeSettings | None = None) -> None:
        self.directory = directory
        self.settings = settings or ProbeSettings()

    def prepare(self, desired: DesiredState) -> None:
        return None

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {}

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        if applied is None or "directory" not in handle:
            return Live(exists=applied is not None, ready=False, reason="NotProbed")
        found = await self.probe(key.namespace, applied, handle)
        generation = int(handle.get("generation", 0))
        return Live(True, (), found.status(generation), found.ready, found.reason, found.message)

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        recorded = {
            "directory": await self._directory(resource, context),
            "generation": context.generation,
        }
        found = await self.probe(resource.namespace, resource.spec, recorded)
        if not found.ready:
            raise TemporaryError(found.message, reason=found.reason)
        return Outcome(
            handle=recorded, status=found.status(context.generation), message=found.message
        )

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        return None

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        return False

    async def _directory(
        self, resource: Resource, context: ApplyContext
    ) -> dict[str, dict[str, Any]]:
        """The network's members as the nodes' configs name them (``_interfaces_of`` of the
        Node driver): Nodes with the key the directory knows, Peers with their declared one."""
        network = resource.spec["network"]
        out: dict[str, dict[str, Any]] = {}
        for kind in ("Node", "Peer"):
            for member in context.desired.of_kind(kind):
                if member.spec.get("network") != network or member.namespace != resource.namespace:
                    continue
                if kind == "Node":
                    identity = await self.directory.node_id(member.name, member.namespace)
                else:
                    identity = member.spec.get("identity")
                out[member.name] = {
                    "kind": kind,
                    "identity": identity,
                    "tags": list(member.spec.get("tags", ())),
                    "interfaces": list(member.spec.get("interfaces", ["public"])),
                }
        return out

    async def _found(
        self, namespace: str, interface: str, directory: Mapping[str, Mapping[str, Any]]
    ) -> tuple[dict[str, PeerRef], dict[str, Identity]]:
        """The running Nodes serving ``interface`` (relays serve ``ephemeral`` without listing
        it), and the keys held of the Nodes whose ID is the one recorded."""
        targets: dict[str, PeerRef] = {}
        keys: dict[str, Identity] = {}
        for name, entry in sorted(directory.items()):
            if entry.get("kind") != "Node":
                continue
            with contextlib.suppress(HyperMeshError):
                key = await self.directory.signer(name, namespace)
                if key is not None and key.node_id == entry.get("identity"):
                    keys[name] = key
            try:  # a node on another host is found through the directory, which may be down
                peer = await self.directory.locate(name, namespace, interface)
            except HyperMeshError:
                peer = None
            if peer is not None and (
                interface == "ephemeral" or interface in entry.get("interfaces", ())
            ):
                targets[name] = peer
        return targets, keys

    async def probe(
        self, namespace: str | None, spec: Mapping[str, Any], handle: Mapping[str, Any]
    ) -> ProbeReport:
        """One probe pass of the policy ``spec`` over the members recorded in ``handle``."""
        interface = str(spec["interface"])
        directory: dict[str, dict[str, Any]] = dict(handle["directory"])
        nodes = {n for n, e in directory.items() if e.get("kind") == "Node"}
        targets, keys = await self._found(namespace or "", interface, directory)
        notes: list[str] = []
        down = sorted(nodes - set(targets))
        if down and targets:
            notes.append(
                f"not probed (not running, or no {interface} interface): {', '.join(down)}"
            )
        peers = sorted(set(directory) - nodes)
        if peers:
            notes.append(
                f"Peers are not probed as callers (their keys are elsewhere): {', '.join(peers)}"
            )
        requests = probe_requests(str(spec["network"]))
        if interface == "ephemeral":
            # The tunnel endpoint itself; what tunnels deliver is not probed (it would take a
            # tunnel through the network's relays for each request).
            requests = {"tunnel.relay": ProbeRequest("GET", "/tunnel/v1/key")}
        planned = plan_probes(
            spec, directory, targets, sorted(keys), list(requests), self.settings.max_probes
        )
        planned = ProbePlan(planned.probes, planned.skipped, (*planned.notes, *notes))
        answers = await run_probes(planned, keys, requests, self.settings) if targets else {}
        return report(interface, planned, answers, len(targets))


__all__ = [
    "ENFORCED",
    "PolicyDriver",
    "Probe",
    "ProbePlan",
    "ProbeReport",
    "ProbeRequest",
    "ProbeSettings",
    "judge",
    "plan_probes",
    "probe_requests",
    "report",
    "run_probes",
]
