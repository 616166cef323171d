"""kopf handlers for every kind of ``hypermesh.online/v1alpha1``: a thin shell over the drivers
of ``hmctl``, run as its reconciler runs them.

Each namespace is one manifest set: the operator keeps every HyperMesh resource of the cluster
in kopf indexes, and builds from a namespace's entries the same ``DesiredState`` that ``hmctl``
builds from files (``hypermesh.model.validate.build``: schema, defaults, references). A handler
then converges its one resource with ``hypermesh.reconcile.converge_one``, the observation and
judgement a pass of the ``Reconciler`` uses for each: hand the desired state to the driver
(``prepare``), observe the resource against the spec last converged, plan, apply when the plan
says so; and writes status and the conditions ``Ready``, ``Reconciling`` and ``Stalled`` with
``observedGeneration``.

The drivers are ``hmctl``'s own (``hypermesh.drivers``) for TLD, Record, Peer and
InterfacePolicy, built on the Kubernetes ports: ``KubeDirectory`` (where nodes are, from Node
status in the indexes; their keys, from their Secrets, read once) and the system clock. A
Node's driver is ``KubeNodeDriver``: its children (``hypermesh_operator.children``). A driver's
handle is kept in status (``registration`` for TLDs and Records, ``handle`` for the others),
and the spec last converged is the spec of ``status.observedGeneration``.

Timers make it level-triggered: Nodes (children re-derived, readiness), Records and TLDs (drift
at the registry re-published), InterfacePolicies (the live probe run again), ephemeral Networks
(expiry). HyperMesh's ``TemporaryError`` becomes ``kopf.TemporaryError`` (retried after its
delay), ``PermanentError`` becomes ``kopf.PermanentError`` (not retried until the spec changes).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from hypermesh import API_VERSION
from hypermesh.drivers import PeerDriver, PolicyDriver, RecordDriver, SystemClock, TLDDriver
from hypermesh.errors import PermanentError, Problem, ReconcileError, TemporaryError
from hypermesh.model.loader import Document, LoadResult
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.model.validate import build
from hypermesh.plan import members
from hypermesh.policy import parse_duration
from hypermesh.reconcile import (
    ApplyContext,
    Converged,
    Driver,
    ReconcileSettings,
    converge_one,
    set_standard,
)
from hypermesh.timefmt import parse_rfc3339, rfc3339
from hypermesh_operator import children
from hypermesh_operator.directory import ADDRESS_FIELDS, Keys, KubeDirectory
from hypermesh_operator.kube import Connection, Kube, path_of
from hypermesh_operator.nodes import KubeNodeDriver

log = logging.getLogger("hypermesh_operator")

GROUP, VERSION = API_VERSION.split("/")
PLURALS = {
    "Network": "networks",
    "Node": "nodes",
    "Peer": "peers",
    "TLD": "tlds",
    "Record": "records",
    "InterfacePolicy": "interfacepolicies",
}


@dataclass(frozen=True)
class OperatorSettings:
    """The operator's settings, from the environment (``HM_OPERATOR_*``)."""

    node_interval: float = 60.0
    """Seconds between re-derivations of each Node's children (members, policies, readiness)."""
    record_interval: float = 60.0
    """Seconds between drift checks of each Record and TLD at the registry (and of each
    InterfacePolicy by the live probe)."""
    expiry_interval: float = 10.0
    """Seconds between checks of each ephemeral Network's expiry."""
    retry_delay: float = 10.0
    """Seconds before a temporary failure is retried when the error names no delay."""
    children: children.Settings = field(default_factory=children.Settings)

    @classmethod
    def from_environment(cls) -> OperatorSettings:
        env = os.environ
        return cls(
            node_interval=float(env.get("HM_OPERATOR_NODE_INTERVAL", cls.node_interval)),
            record_interval=float(env.get("HM_OPERATOR_RECORD_INTERVAL", cls.record_interval)),
            expiry_interval=float(env.get("HM_OPERATOR_EXPIRY_INTERVAL", cls.expiry_interval)),
            retry_delay=float(env.get("HM_OPERATOR_RETRY_DELAY", cls.retry_delay)),
            children=children.Settings(
                image=env.get("HM_OPERATOR_NODE_IMAGE", children.Settings.image),
                image_pull_policy=env.get(
                    "HM_OPERATOR_NODE_PULL_POLICY", children.Settings.image_pull_policy
                ),
                cluster_domain=env.get(
                    "HM_OPERATOR_CLUSTER_DOMAIN", children.Settings.cluster_domain
                ),
                storage_size=env.get("HM_OPERATOR_STORAGE_SIZE", children.Settings.storage_size),
                storage_class=env.get("HM_OPERATOR_STORAGE_CLASS") or None,
            ),
        )


SETTINGS = OperatorSettings.from_environment()
"""Read when the module is imported (``kopf run`` imports it once)."""
NODE_INTERVAL = SETTINGS.node_interval
RECORD_INTERVAL = SETTINGS.record_interval
EXPIRY_INTERVAL = SETTINGS.expiry_interval


class State:
    """What the handlers share: the API client and the nodes' keys read or made."""

    def __init__(self, settings: OperatorSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.keys = Keys(kube)
        self.legacy_checked: set[str] = set()
        """Nodes (by UID) whose leftover Deployment of an earlier operator was looked for."""
        self._gate: asyncio.Semaphore | None = None

    @property
    def gate(self) -> asyncio.Semaphore:
        """The bound on resources reconciled at once (the reconciler's ``parallelism``): a
        burst of creations queues here rather than opening hundreds of connections to the
        registry at once, each then too slow to answer in time."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(ReconcileSettings().parallelism)
        return self._gate


def _state(memo: Any) -> State:
    state = memo.get("hypermesh") if isinstance(memo, Mapping) else None
    if not isinstance(state, State):
        raise kopf.PermanentError("the operator was not started (no startup handler ran)")
    return state


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/operator"
    # kopf's own bookkeeping (the spec last handled, handler progress) goes in status, with
    # the handler's results: one status patch a pass, not a second one for annotations.
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage()
    settings.persistence.progress_storage = kopf.StatusProgressStorage()
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    memo["hypermesh"] = State(
        OperatorSettings.from_environment(), Kube(Connection.from_environment())
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    state = memo.get("hypermesh")
    if isinstance(state, State):
        await state.kube.close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """``HM_KUBE_SERVER`` (tests, ``kubectl proxy``), else the pod's service account, else
    the kubeconfig."""
    server = os.environ.get("HM_KUBE_SERVER")
    if server:
        return kopf.ConnectionInfo(server=server.rstrip("/"), insecure=True)
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


# -- indexes: every HyperMesh resource of the cluster, by namespace ----------------------------

INDEXED_STATUS = ("identity", *ADDRESS_FIELDS.values())
"""The status fields the indexes keep: what the node directory answers from."""


def _entry(kind: str, body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": body.metadata.name, "labels": dict(body.metadata.labels)},
        "spec": dict(body.spec),
        "status": {k: body.status.get(k) for k in INDEXED_STATUS if k in body.status},
    }


def _indexer(kind: str) -> Callable[..., Awaitable[dict[str, dict[str, Any]]]]:
    """An index function of ``kind``. It is a coroutine function so that kopf calls it in its
    event loop: a plain function kopf runs in a thread of its executor, a thread hand-off (and a
    wait for the GIL) on every watch event of every resource."""

    async def index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, dict[str, Any]]:
        return {namespace or "": _entry(kind, body)}

    index.__name__ = index.__qualname__ = f"hm_{PLURALS[kind]}"
    return index


for _kind, _plural in PLURALS.items():
    kopf.index(GROUP, VERSION, _plural, id=f"hm_{_plural}")(_indexer(_kind))


def _entries(kwargs: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for plural in PLURALS.values():
        index = kwargs.get(f"hm_{plural}")
        if index is not None and namespace in index:
            out.extend(index[namespace])
    return out


# -- validation: the namespace as one manifest set ---------------------------------------------


@dataclass(frozen=True, slots=True)
class View:
    """A namespace as ``hmctl`` would see it: the desired state and the Nodes' status."""

    desired: DesiredState
    problems: tuple[Problem, ...]
    status: Mapping[tuple[str, str], Mapping[str, Any]]
    """The indexed status fields (``INDEXED_STATUS``) by (kind, name)."""

    def node_status(self) -> dict[str, Mapping[str, Any]]:
        """Every Node's indexed status, by name (what the node directory reads)."""
        return {name: s for (kind, name), s in self.status.items() if kind == "Node"}

    def cluster(self) -> children.Cluster:
        identities = {
            name: str(s["identity"]) for name, s in self.node_status().items() if s.get("identity")
        }
        return children.Cluster(self.desired, identities)


def view_of(entries: Iterable[Mapping[str, Any]], this: Mapping[str, Any] | None = None) -> View:
    """Validate a namespace's resources with ``hypermesh.model`` (``this``, the resource being
    handled, replaces its possibly older index entry)."""
    by_key: dict[tuple[str, str], Mapping[str, Any]] = {}
    for entry in entries:
        by_key[(entry["kind"], entry["metadata"]["name"])] = entry
    if this is not None:
        by_key[(this["kind"], this["metadata"]["name"])] = this
    documents = []
    status: dict[tuple[str, str], Mapping[str, Any]] = {}
    for i, (key, entry) in enumerate(sorted(by_key.items())):
        status[key] = entry.get("status") or {}
        data = {k: v for k, v in entry.items() if k != "status"}
        documents.append(Document(f"{key[0]}/{key[1]}", i, data, {}))
    desired, problems = build(LoadResult(documents=documents))
    return View(desired, tuple(problems), status)


REFERENCE_RETRY = 5.0
"""Seconds before a resource naming one not seen yet is validated again."""


def _check(view: View, kind: str, name: str) -> Resource:
    """The validated resource. A spec that is wrong in itself is a ``PermanentError`` naming
    every field path at fault; a reference to a resource the operator has not seen (yet: the
    objects of one ``kubectl apply`` arrive in any order) is a ``TemporaryError``."""
    label = f"{kind}/{name}"
    found = [p for p in view.problems if p.resource == label or p.position.file == label]
    resource = view.desired.get(kind, name)
    if not found and resource is not None:
        return resource
    text = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in found)
    if found and all(p.unresolved for p in found):
        raise TemporaryError(text, reason="UnresolvedReference", delay=REFERENCE_RETRY)
    raise PermanentError(text or f"{label} is not valid", reason="Invalid")


# -- the shell: one resource, as a pass of the reconciler handles it ---------------------------


SETTLES_AFTER_APPLY = frozenset({"Node"})
"""Kinds whose world settles after ``apply`` returns (a pod starts once its children exist):
their readiness is observed right after applying, as ``hmctl``'s next pass would."""


def kopf_error(exc: ReconcileError, retry_delay: float) -> Exception:
    """HyperMesh's retry policy in kopf's terms (the one place they meet)."""
    if isinstance(exc, TemporaryError):
        delay = exc.delay if exc.delay is not None else retry_delay
        return kopf.TemporaryError(str(exc), delay=delay)
    return kopf.PermanentError(str(exc))


# -- status ------------------------------------------------------------------------------------


def _now() -> str:
    return rfc3339(datetime.now(UTC))


def conditions(
    previous: Iterable[Mapping[str, Any]],
    generation: int,
    *,
    ready: bool,
    reason: str,
    message: str = "",
    reconciling: bool = False,
    stalled: bool = False,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled as ``hmctl`` writes them."""
    return set_standard(
        previous,
        generation,
        _now(),
        ready=ready,
        reason=reason,
        message=message,
        reconciling=reconciling,
        stalled=stalled,
    )


def _set(patch: kopf.Patch, body: kopf.Body, name: str, value: Any) -> None:
    """Write a status field only when it changes (an unchanged status costs no API call)."""
    if body.status.get(name) != value:
        patch.status[name] = value


Work = Callable[[], Awaitable[Converged]]


def _merged(
    previous: Iterable[Mapping[str, Any]], found: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The conditions a driver reports (a policy's ``Enforced``) over the previous ones, by
    type, as the reconciler merges a driver's status into the resource's."""
    by_type = {str(c.get("type")): c for c in previous}
    by_type |= {str(c.get("type")): c for c in found}
    return list(by_type.values())


async def converge(body: kopf.Body, patch: kopf.Patch, state: State, work: Work) -> Converged:
    """Run ``work``, record status and conditions, and map HyperMesh's retry policy to kopf's."""
    generation = int(body.metadata.get("generation") or 0)
    previous = list(body.status.get("conditions") or [])
    try:
        result = await work()
    except ReconcileError as exc:
        temporary = isinstance(exc, TemporaryError)
        found = conditions(
            previous,
            generation,
            ready=False,
            reason=exc.reason,
            message=str(exc),
            reconciling=temporary,
            stalled=not temporary,
        )
        _set(patch, body, "conditions", found)
        raise kopf_error(exc, state.settings.retry_delay) from exc
    for key, value in result.status.items():
        if key != "conditions":
            _set(patch, body, key, value)
    _set(patch, body, "observedGeneration", generation)
    found = conditions(
        _merged(previous, result.status.get("conditions") or ()),
        generation,
        ready=result.ready,
        reason=result.reason,
        message=result.message,
        reconciling=not result.ready,
    )
    _set(patch, body, "conditions", found)
    return result


# -- every kind the reconciler's drivers handle -------------------------------------------------

HANDLE_FIELDS = {"TLD": "registration", "Record": "registration"}
"""The status field keeping each kind's driver handle (``handle`` when not listed)."""


def _handle_field(kind: str) -> str:
    return HANDLE_FIELDS.get(kind, "handle")


def _this(kind: str, body: kopf.Body) -> dict[str, Any]:
    return _entry(kind, body)


def driver_for(state: State, kind: str, namespace: str, view: View, body: kopf.Body) -> Driver:
    """The driver of ``kind`` on the Kubernetes ports of ``namespace``."""
    directory = KubeDirectory(namespace, view.node_status(), state.keys)
    if kind == "Node":
        owner = children.Owner(
            body.metadata.name,
            namespace,
            str(body.metadata.uid),
            int(body.metadata.get("generation") or 1),
        )
        identities = view.cluster().identities
        return KubeNodeDriver(
            state.kube,
            state.keys,
            owner,
            identities,
            state.settings.children,
            state.legacy_checked,
        )
    drivers: dict[str, Callable[[], Driver]] = {
        "Peer": PeerDriver,
        "TLD": lambda: TLDDriver(directory, SystemClock()),
        "Record": lambda: RecordDriver(directory, SystemClock()),
        "InterfacePolicy": lambda: PolicyDriver(directory),
    }
    return drivers[kind]()


def _applied(body: kopf.Body, resource: Resource, handle: Mapping[str, Any]) -> Any:
    """The spec last converged: the resource's own when its generation was converged (and,
    for a kind that keeps a handle, the handle was recorded); None otherwise."""
    generation = int(body.metadata.get("generation") or 0)
    if body.status.get("observedGeneration") != generation:
        return None
    if resource.kind in HANDLE_FIELDS and not handle:
        return None
    return resource.spec


def _view(kind: str, body: kopf.Body, entries: list[dict[str, Any]]) -> View:
    """The namespace as the resource sees it. Other Records neither refer to a Record nor
    change its checks: they are left out, so that each of N records costs O(other kinds)."""
    if kind == "Record":
        entries = [e for e in entries if e["kind"] != "Record"]
    return view_of(entries, _this(kind, body))


async def reconcile_resource(
    state: State, kind: str, body: kopf.Body, namespace: str, entries: list[dict[str, Any]]
) -> Converged:
    """One resource through its driver, as a pass of the reconciler would take it."""
    view = _view(kind, body, entries)
    resource = _check(view, kind, body.metadata.name)
    driver = driver_for(state, kind, namespace, view, body)
    handle = dict(body.status.get(_handle_field(kind)) or {})
    context = ApplyContext(view.desired, int(body.metadata.get("generation") or 0))
    applied = _applied(body, resource, handle)
    async with state.gate:
        result = await converge_one(
            driver, resource, handle, applied, context, settles=kind in SETTLES_AFTER_APPLY
        )
    if not result.handle:
        return result
    status = {**result.status, _handle_field(kind): dict(result.handle)}
    return Converged(result.handle, status, result.ready, result.reason, result.message)


async def withdraw(
    state: State, kind: str, body: kopf.Body, namespace: str, entries: list[dict[str, Any]]
) -> None:
    """Delete what the driver made (the finalizer's work: unregister a TLD, withdraw a
    Record's record sets)."""
    handle = dict(body.status.get(_handle_field(kind)) or {})
    if not handle:
        return
    view = view_of(entries)
    driver = driver_for(state, kind, namespace, view, body)
    try:
        await driver.delete(ResourceKey(kind, body.metadata.name), handle)
    except ReconcileError as exc:
        raise kopf_error(exc, state.settings.retry_delay) from exc


def _handlers(kind: str, *, interval: float | None = None, finalizer: bool = False) -> None:
    """Register the handlers of ``kind``: reconcile on create, spec update and resume; again
    every ``interval`` seconds (drift); with a ``finalizer``, delete on deletion."""
    plural, name = PLURALS[kind], kind.lower()

    async def changed(
        body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
    ) -> None:
        state = _state(memo)
        entries = _entries(kwargs, namespace or "")
        await converge(
            body,
            patch,
            state,
            lambda: reconcile_resource(state, kind, body, namespace or "", entries),
        )

    async def timer(
        body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
    ) -> None:
        if body.metadata.get("deletionTimestamp"):
            return
        await changed(body, namespace, patch, memo, **kwargs)

    async def deleted(body: kopf.Body, namespace: str | None, memo: Any, **kwargs: Any) -> None:
        await withdraw(_state(memo), kind, body, namespace or "", _entries(kwargs, namespace or ""))

    changed.__name__ = changed.__qualname__ = f"{name}_changed"
    timer.__name__ = timer.__qualname__ = f"{name}_timer"
    deleted.__name__ = deleted.__qualname__ = f"{name}_deleted"
    kopf.on.resume(GROUP, VERSION, plural, id=changed.__name__)(changed)
    kopf.on.create(GROUP, VERSION, plural, id=changed.__name__)(changed)
    kopf.on.update(GROUP, VERSION, plural, field="spec", id=changed.__name__)(changed)
    if interval is not None:
        kopf.timer(
            GROUP, VERSION, plural, id=timer.__name__, interval=interval, initial_delay=interval
        )(timer)
    if finalizer:
        kopf.on.delete(GROUP, VERSION, plural, id=deleted.__name__)(deleted)


_handlers("Node", interval=NODE_INTERVAL)
_handlers("TLD", interval=RECORD_INTERVAL, finalizer=True)
_handlers("Record", interval=RECORD_INTERVAL, finalizer=True)
_handlers("Peer")
_handlers("InterfacePolicy", interval=RECORD_INTERVAL)


# -- Network -----------------------------------------------------------------------------------


async def reconcile_network(body: kopf.Body, entries: list[dict[str, Any]]) -> Converged:
    """Status only: a network runs nothing; an ephemeral one keeps when it expires (the
    expiry timer below deletes it then)."""
    name = body.metadata.name
    view = view_of(entries, _this("Network", body))
    network = _check(view, "Network", name)
    spec = network.spec
    nodes = [n for n in view.desired.of_kind("Node") if n.spec.get("network") == name]
    status: dict[str, Any] = {"mode": spec["mode"], "nodes": len(nodes)}
    message = f"{spec['mode']} network with {len(nodes)} node(s)"
    if spec["mode"] != "ephemeral":
        return Converged({}, status, True, "Declared", message)
    created = parse_rfc3339(body.status.get("createdAt")) or parse_rfc3339(
        body.metadata.get("creationTimestamp")
    )
    created = created or datetime.now(UTC)
    try:
        ttl = parse_duration(str(spec["ttl"]))
    except ValueError as exc:
        raise PermanentError(f"spec.ttl: {exc}", reason="BadTTL") from exc
    expires = rfc3339(datetime.fromtimestamp(created.timestamp() + ttl, UTC))
    status |= {"createdAt": rfc3339(created), "expiresAt": expires}
    return Converged(
        {}, status, True, "Declared", f"{message}; expires at {expires} (ttl {spec['ttl']})"
    )


@kopf.on.resume(GROUP, VERSION, "networks")
@kopf.on.create(GROUP, VERSION, "networks")
@kopf.on.update(GROUP, VERSION, "networks", field="spec")
async def network_changed(
    body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
) -> None:
    state = _state(memo)
    entries = _entries(kwargs, namespace or "")
    await converge(body, patch, state, lambda: reconcile_network(body, entries))


@kopf.timer(
    GROUP,
    VERSION,
    "networks",
    interval=EXPIRY_INTERVAL,
    when=lambda spec, **_: spec.get("mode") == "ephemeral",
)
async def network_expiry(
    body: kopf.Body, namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any
) -> None:
    """Delete an ephemeral network once ``status.expiresAt`` has passed: its members first
    (Records and TLDs withdraw themselves through their finalizers, Nodes take their children
    along by owner references), then the network itself."""
    deadline = parse_rfc3339(body.status.get("expiresAt"))
    if deadline is None or deadline > datetime.now(UTC) or body.metadata.get("deletionTimestamp"):
        return
    state = _state(memo)
    await delete_network(
        state, namespace or "", body.metadata.name, _entries(kwargs, namespace or "")
    )
    logger.info(f"ephemeral network {body.metadata.name!r} expired at {rfc3339(deadline)}")


async def delete_network(
    state: State, namespace: str, name: str, entries: list[dict[str, Any]]
) -> None:
    specs = {ResourceKey(e["kind"], e["metadata"]["name"]): e["spec"] for e in entries}
    for key in members(ResourceKey("Network", name), specs):
        await state.kube.delete(path_of(API_VERSION, PLURALS[key.kind], namespace, key.name))
    await state.kube.delete(path_of(API_VERSION, "networks", namespace, name))


__all__ = [
    "OperatorSettings",
    "State",
    "View",
    "conditions",
    "delete_network",
    "kopf_error",
    "view_of",
]
