"""kopf handlers for every kind of ``hypermesh.online/v1alpha1``.

Each namespace is one manifest set: the operator keeps every HyperMesh resource of the cluster
in kopf indexes, and builds from a namespace's entries the same ``DesiredState`` that ``hmctl``
builds from files (``hypermesh.model.validate.build``: schema, defaults, references). Then:

- **Node**: a Secret (the key, made once), a ConfigMap (NodeConfig), a Deployment and a UDP
  Service (``hypermesh_operator.children``), owned by the Node; status ``identity``,
  ``address`` (the Service's ClusterIP and QUIC port), ``service`` and conditions.
- **TLD**, **Record**: the registry driver of ``hmctl`` (``hypermesh.drivers.registry``), given a
  working directory that holds what it reads in standalone mode (the owner's key from its
  Secret, the registry's and targets' addresses and IDs from their Nodes' status). The driver's
  handle is kept in ``status.registration``; a finalizer withdraws records and TLDs on deletion.
- **Network**: status (mode, member count; for an ephemeral network ``createdAt`` and
  ``expiresAt``); a timer deletes an expired ephemeral network's members and then the network
  (the members' children go with them by owner references).
- **Peer**, **InterfacePolicy**: validated and declared (policies reach nodes through their
  configs, re-derived by a timer on each Node).

Status conditions (``Ready``, ``Reconciling``, ``Stalled``) carry ``observedGeneration`` as
``hmctl``'s do. HyperMesh's ``TemporaryError`` becomes ``kopf.TemporaryError`` (retried after its
delay), ``PermanentError`` becomes ``kopf.PermanentError`` (not retried until the spec changes).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
from cryptography.hazmat.primitives import serialization

from hypermesh import API_VERSION, __version__
from hypermesh.drivers.registry import RecordDriver, TLDDriver
from hypermesh.errors import PermanentError, Problem, ReconcileError, TemporaryError
from hypermesh.model.loader import Document, LoadResult
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.model.validate import build
from hypermesh.node.runtime import RuntimeInfo, write_runtime
from hypermesh.plan.expiry import members
from hypermesh.policy import parse_duration
from hypermesh.reconcile import ApplyContext
from hypermesh.reconcile.conditions import set_standard
from hypermesh.timefmt import parse_rfc3339, rfc3339
from hypermesh.transport.identity import Identity
from hypermesh_operator import children
from hypermesh_operator.kube import Connection, Kube, path_of

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

    work_dir: Path = Path("/tmp/hypermesh-operator")  # noqa: S108 (an emptyDir in the pod)
    """Where the registry drivers find keys and addresses (one folder per namespace, 0700)."""
    node_interval: float = 60.0
    """Seconds between re-derivations of each Node's children (members, policies, readiness)."""
    expiry_interval: float = 10.0
    """Seconds between checks of each ephemeral Network's expiry."""
    retry_delay: float = 10.0
    """Seconds before a temporary failure is retried when the error names no delay."""
    children: children.Settings = field(default_factory=children.Settings)

    @classmethod
    def from_environment(cls) -> OperatorSettings:
        env = os.environ
        return cls(
            work_dir=Path(env.get("HM_OPERATOR_WORK_DIR", str(cls.work_dir))),
            node_interval=float(env.get("HM_OPERATOR_NODE_INTERVAL", cls.node_interval)),
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
            ),
        )


SETTINGS = OperatorSettings.from_environment()
"""Read when the module is imported (``kopf run`` imports it once)."""
NODE_INTERVAL = SETTINGS.node_interval
EXPIRY_INTERVAL = SETTINGS.expiry_interval


class State:
    """What the handlers share: the API client, the registry drivers and the keys made."""

    def __init__(self, settings: OperatorSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self._tlds: dict[str, TLDDriver] = {}
        self._records: dict[str, RecordDriver] = {}
        self._keys: dict[tuple[str, str], bytes] = {}
        """PEM keys by (namespace, node), read from or written to the Secrets."""

    def work_dir(self, namespace: str) -> Path:
        path = self.settings.work_dir / namespace
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def tld_driver(self, namespace: str) -> TLDDriver:
        if namespace not in self._tlds:
            self._tlds[namespace] = TLDDriver(self.work_dir(namespace))
        return self._tlds[namespace]

    def record_driver(self, namespace: str) -> RecordDriver:
        if namespace not in self._records:
            self._records[namespace] = RecordDriver(self.work_dir(namespace))
        return self._records[namespace]


def _state(memo: Any) -> State:
    state = memo.get("hypermesh") if isinstance(memo, Mapping) else None
    if not isinstance(state, State):
        raise kopf.PermanentError("the operator was not started (no startup handler ran)")
    return state


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/operator"
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


def _entry(kind: str, body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": body.metadata.name, "labels": dict(body.metadata.labels)},
        "spec": dict(body.spec),
        "status": {k: body.status.get(k) for k in ("identity", "address") if k in body.status},
    }


def _indexer(kind: str) -> Callable[..., dict[str, dict[str, Any]]]:
    def index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, dict[str, Any]]:
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
    """``status.identity`` and ``status.address`` by (kind, name)."""

    def cluster(self) -> children.Cluster:
        identities = {
            name: str(s["identity"])
            for (kind, name), s in self.status.items()
            if kind == "Node" and s.get("identity")
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
    if found and all(_unresolved(p) for p in found):
        raise TemporaryError(text, reason="UnresolvedReference", delay=REFERENCE_RETRY)
    raise PermanentError(text or f"{label} is not valid", reason="Invalid")


REFERENCE_RETRY = 5.0
"""Seconds before a resource naming one not seen yet is validated again."""


def _unresolved(problem: Problem) -> bool:
    """True for a reference to a resource that is not declared (it may be created later)."""
    return problem.message.split(" (did you mean")[0].endswith(
        ("is not declared", "is neither a declared Node nor Peer")
    )


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


Work = Callable[[], Awaitable[tuple[dict[str, Any], bool, str, str]]]
"""A reconciliation: returns (status fields, ready, reason, message)."""


async def converge(body: kopf.Body, patch: kopf.Patch, state: State, work: Work) -> None:
    """Run ``work``, record status and conditions, and map HyperMesh's retry policy to kopf's."""
    generation = int(body.metadata.get("generation") or 0)
    previous = list(body.status.get("conditions") or [])
    try:
        fields, ready, reason, message = await work()
    except TemporaryError as exc:
        patch.status["conditions"] = conditions(
            previous, generation, ready=False, reason=exc.reason, message=str(exc), reconciling=True
        )
        delay = exc.delay if exc.delay is not None else state.settings.retry_delay
        raise kopf.TemporaryError(str(exc), delay=delay) from exc
    except ReconcileError as exc:
        patch.status["conditions"] = conditions(
            previous, generation, ready=False, reason=exc.reason, message=str(exc), stalled=True
        )
        raise kopf.PermanentError(str(exc)) from exc
    for key, value in fields.items():
        patch.status[key] = value
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = conditions(
        previous, generation, ready=ready, reason=reason, message=message, reconciling=not ready
    )


def _this(kind: str, body: kopf.Body) -> dict[str, Any]:
    return _entry(kind, body)


# -- Node --------------------------------------------------------------------------------------


def _pem(identity: Identity) -> bytes:
    return identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def _node_key(state: State, namespace: str, name: str) -> tuple[bytes, str] | None:
    """The Node's key and ID from its Secret, or None when it has none yet."""
    cached = state._keys.get((namespace, name))
    secret = await state.kube.get(
        path_of("v1", "secrets", namespace, children.object_name(name, "identity"))
    )
    if secret is None:
        return None
    data = secret.get("data") or {}
    pem = cached or base64.b64decode(str(data.get(children.KEY_FILE, "")))
    node_id = base64.b64decode(str(data.get(children.PUBLIC_FILE, ""))).decode().strip()
    state._keys[(namespace, name)] = pem
    return pem, node_id


async def reconcile_node(
    state: State, body: kopf.Body, namespace: str, entries: list[dict[str, Any]]
) -> tuple[dict[str, Any], bool, str, str]:
    name = body.metadata.name
    view = view_of(entries, _this("Node", body))
    node = _check(view, "Node", name)
    owner = children.Owner(
        name, namespace, str(body.metadata.uid), int(body.metadata.get("generation") or 1)
    )
    found = await _node_key(state, namespace, name)
    if found is None:
        identity = Identity.generate()
        pem, node_id = _pem(identity), identity.node_id
    else:
        pem, node_id = found
    cluster = view.cluster()
    cluster = children.Cluster(cluster.desired, {**cluster.identities, name: node_id})
    made = children.node_children(node, owner, cluster, pem, node_id, state.settings.children)
    await state.kube.ensure(made.secret, immutable=True)
    state._keys[(namespace, name)] = pem
    await state.kube.ensure(made.config_map)
    service = await state.kube.ensure(made.service)
    deployment = await state.kube.ensure(made.deployment)
    ports = children.ports_of(node.spec)
    settings = state.settings.children
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    status: dict[str, Any] = {
        "identity": node_id,
        "service": f"{children.service_host(name, namespace, settings)}:{ports.public}",
    }
    if cluster_ip and cluster_ip != "None":
        status["address"] = f"{cluster_ip}:{ports.public}"
    ready_replicas = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    if ready_replicas >= 1:
        return status, True, "Running", f"serving on {status.get('address', status['service'])}"
    return status, False, "Starting", "waiting for the node's pod to be ready"


@kopf.on.resume(GROUP, VERSION, "nodes")
@kopf.on.create(GROUP, VERSION, "nodes")
@kopf.on.update(GROUP, VERSION, "nodes", field="spec")
async def node_changed(
    body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
) -> None:
    await _converge_node(body, namespace, patch, memo, kwargs)


async def _converge_node(
    body: kopf.Body,
    namespace: str | None,
    patch: kopf.Patch,
    memo: Any,
    kwargs: Mapping[str, Any],
) -> None:
    state = _state(memo)
    entries = _entries(kwargs, namespace or "")
    await converge(
        body, patch, state, lambda: reconcile_node(state, body, namespace or "", entries)
    )


@kopf.timer(GROUP, VERSION, "nodes", interval=NODE_INTERVAL, initial_delay=NODE_INTERVAL)
async def node_timer(
    body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
) -> None:
    """Level-triggered: re-derive the children (members, their keys and the network's policies
    change the config; a Deployment edited by hand is put back) and refresh readiness."""
    if body.metadata.get("deletionTimestamp"):
        return
    await _converge_node(body, namespace, patch, memo, kwargs)


# -- Network -----------------------------------------------------------------------------------


async def reconcile_network(
    body: kopf.Body, entries: list[dict[str, Any]]
) -> tuple[dict[str, Any], bool, str, str]:
    name = body.metadata.name
    view = view_of(entries, _this("Network", body))
    network = _check(view, "Network", name)
    spec = network.spec
    nodes = [n for n in view.desired.of_kind("Node") if n.spec.get("network") == name]
    status: dict[str, Any] = {"mode": spec["mode"], "nodes": len(nodes)}
    message = f"{spec['mode']} network with {len(nodes)} node(s)"
    if spec["mode"] != "ephemeral":
        return status, True, "Declared", message
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
    return status, True, "Declared", f"{message}; expires at {expires} (ttl {spec['ttl']})"


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


# -- TLD and Record: the registry driver, as hmctl uses it --------------------------------------


async def _materialise(state: State, namespace: str, view: View, nodes: Iterable[str]) -> None:
    """Write what the registry driver reads in standalone mode for ``nodes``: the key of each
    Node whose Secret the operator holds, and the address and ID of each Node whose status has
    them (the Service's ClusterIP and QUIC port)."""
    root = state.work_dir(namespace) / "nodes"
    for name in set(nodes):
        node_dir = root / name
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = await _node_key(state, namespace, name)
        if found is not None:
            _write_key(node_dir, *found)
        status = view.status.get(("Node", name)) or {}
        if status.get("address") and status.get("identity"):
            info = RuntimeInfo(
                pid=0,
                address=str(status["address"]),
                identity=str(status["identity"]),
                started_at=_now(),
                version=__version__,
                generation=0,
            )
            write_runtime(node_dir, info)
            (node_dir / "identity.pub").write_text(f"{status['identity']}\n", encoding="ascii")


def _write_key(node_dir: Path, pem: bytes, node_id: str) -> None:
    path = node_dir / "identity.key"
    if path.exists() and path.read_bytes() == pem:
        return
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)
    (node_dir / "identity.pub").write_text(f"{node_id}\n", encoding="ascii")


def _nodes_named(view: View, resource: Resource) -> set[str]:
    """The Nodes the registry driver reads for ``resource``: the owner, the network's registry
    node, a record's target."""
    names: set[str] = set()
    tld = resource if resource.kind == "TLD" else view.desired.get("TLD", str(resource.spec["tld"]))
    if tld is not None:
        if "node" in tld.spec.get("owner", {}):
            names.add(str(tld.spec["owner"]["node"]))
        network = view.desired.get("Network", str(tld.spec["network"]))
        registry = (network.spec.get("registry") or {}) if network else {}
        if "node" in registry:
            names.add(str(registry["node"]))
    target = resource.spec.get("target") if resource.kind == "Record" else None
    if isinstance(target, Mapping) and target.get("node"):
        names.add(str(target["node"]))
    return names


async def reconcile_registered(
    state: State, kind: str, body: kopf.Body, namespace: str, entries: list[dict[str, Any]]
) -> tuple[dict[str, Any], bool, str, str]:
    # Other Records neither refer to this one nor change its checks: leave them out, so that
    # each of N records costs O(other kinds), not O(N).
    view = view_of([e for e in entries if e["kind"] != "Record"], _this(kind, body))
    resource = _check(view, kind, body.metadata.name)
    await _materialise(state, namespace, view, _nodes_named(view, resource))
    driver = state.tld_driver(namespace) if kind == "TLD" else state.record_driver(namespace)
    handle = dict(body.status.get("registration") or {})
    context = ApplyContext(view.desired, int(body.metadata.get("generation") or 0))
    outcome = await driver.apply(resource, handle, context)
    status = dict(outcome.status) | {"registration": dict(outcome.handle)}
    return status, True, "Registered" if kind == "TLD" else "Published", outcome.message


async def withdraw(
    state: State, kind: str, body: kopf.Body, namespace: str, entries: list[dict[str, Any]]
) -> None:
    """Unregister a TLD or withdraw a Record's record sets (the finalizer's work)."""
    handle = dict(body.status.get("registration") or {})
    if not handle:
        return
    view = view_of(entries)
    await _materialise(state, namespace, view, [str(handle.get("ownerRef", {}).get("node", ""))])
    registry = handle.get("registry") or {}
    if "node" in registry:
        await _materialise(state, namespace, view, [str(registry["node"])])
    driver = state.tld_driver(namespace) if kind == "TLD" else state.record_driver(namespace)
    try:
        await driver.delete(ResourceKey(kind, body.metadata.name), handle)
    except TemporaryError as exc:
        delay = exc.delay if exc.delay is not None else state.settings.retry_delay
        raise kopf.TemporaryError(str(exc), delay=delay) from exc
    except ReconcileError as exc:
        raise kopf.PermanentError(str(exc)) from exc


def _registered(kind: str, plural: str) -> None:
    """The handlers of a kind the registry holds (TLD, Record): register or publish it on
    create, update and resume; withdraw it on deletion (kopf keeps a finalizer for that)."""
    name = kind.lower()

    async def changed(
        body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
    ) -> None:
        state = _state(memo)
        entries = _entries(kwargs, namespace or "")
        await converge(
            body,
            patch,
            state,
            lambda: reconcile_registered(state, kind, body, namespace or "", entries),
        )

    async def deleted(body: kopf.Body, namespace: str | None, memo: Any, **kwargs: Any) -> None:
        await withdraw(_state(memo), kind, body, namespace or "", _entries(kwargs, namespace or ""))

    changed.__name__ = changed.__qualname__ = f"{name}_changed"
    deleted.__name__ = deleted.__qualname__ = f"{name}_deleted"
    kopf.on.resume(GROUP, VERSION, plural, id=changed.__name__)(changed)
    kopf.on.create(GROUP, VERSION, plural, id=changed.__name__)(changed)
    kopf.on.update(GROUP, VERSION, plural, field="spec", id=changed.__name__)(changed)
    kopf.on.delete(GROUP, VERSION, plural, id=deleted.__name__)(deleted)


_registered("TLD", "tlds")
_registered("Record", "records")


# -- Peer and InterfacePolicy: validated and declared ------------------------------------------


async def reconcile_declared(
    kind: str, body: kopf.Body, entries: list[dict[str, Any]]
) -> tuple[dict[str, Any], bool, str, str]:
    view = view_of(entries, _this(kind, body))
    resource = _check(view, kind, body.metadata.name)
    if kind == "Peer":
        fields = {
            "identity": resource.spec.get("identity"),
            "address": resource.spec.get("address"),
        }
        return fields, True, "Declared", "declared (peers are not probed yet)"
    rules = len(resource.spec.get("rules", []))
    return {}, True, "Accepted", f"{rules} rule(s); its tests pass; nodes get it in their config"


@kopf.on.resume(GROUP, VERSION, "peers")
@kopf.on.create(GROUP, VERSION, "peers")
@kopf.on.update(GROUP, VERSION, "peers", field="spec")
async def peer_changed(
    body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
) -> None:
    entries = _entries(kwargs, namespace or "")
    await converge(body, patch, _state(memo), lambda: reconcile_declared("Peer", body, entries))


@kopf.on.resume(GROUP, VERSION, "interfacepolicies")
@kopf.on.create(GROUP, VERSION, "interfacepolicies")
@kopf.on.update(GROUP, VERSION, "interfacepolicies", field="spec")
async def policy_changed(
    body: kopf.Body, namespace: str | None, patch: kopf.Patch, memo: Any, **kwargs: Any
) -> None:
    entries = _entries(kwargs, namespace or "")
    await converge(
        body, patch, _state(memo), lambda: reconcile_declared("InterfacePolicy", body, entries)
    )


__all__ = ["OperatorSettings", "State", "View", "conditions", "delete_network", "view_of"]
