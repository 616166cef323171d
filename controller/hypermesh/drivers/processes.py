"""Standalone mode: every Node is a local process (``python -m hypermesh.node``).

Each node owns a directory ``<state>/nodes/<name>/`` holding its config, identity, lock and
runtime file. The node process holds an ``flock`` on ``node.lock`` for its whole life, so there
is never more than one process per node, and whether a node runs is a question the kernel
answers (a crashed ``hmctl apply`` leaves no stale pid file to trust). The controller pins each
node's identity (``identity.pub``) when it reads the node's status over HTTP/3.

Only the Nodes placed on this controller's host are started here (the reconciler hands over no
other); a Node placed elsewhere is a member of its network by its pinned ``identity`` (left out
without one: it joins by token and is found through the registry), and a registry placed
elsewhere is reached at its pinned address and key. A node with a pinned identity starts only
with that key; a node without one whose registry is elsewhere joins it with the controller's
join token before its first start (``joined.json`` remembers it, so a single-use token is
spent once).

A node whose config changes only in what its network gives it (the members and their keys, the
interface policies, federation, the other mirrors: ``node.reload``) is not restarted: its new
config is written and the node told to reload it (SIGHUP); it keeps its pid, its connections
and its port. The driver waits for the node's ``/status`` to report the new config's digest,
and restarts the node when it refuses the file or does not answer in time. Any other change
(the node's own spec, an address to listen on, a policy declared or withdrawn) restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypermesh.drivers.bootstrap import BootstrapError, load_bootstrap
from hypermesh.drivers.forkserver import Child, ForkServer, ForkServerError
from hypermesh.drivers.nodeconfig import interfaces_of
from hypermesh.drivers.standalone import StandaloneDirectory
from hypermesh.drivers.statuses import StatusConnections
from hypermesh.errors import (
    HyperMeshError,
    IdentityMismatch,
    PermanentError,
    TemporaryError,
    TransportError,
)
from hypermesh.files import write_atomic
from hypermesh.model.placement import Placement, node_host, reachable_address
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.node.lockfile import pid_alive, running_pid
from hypermesh.node.reload import config_digest, fields_of, reloadable
from hypermesh.node.runtime import RuntimeInfo, previous_port, read_runtime
from hypermesh.plan import Drift, DriftKind
from hypermesh.reconcile import ApplyContext, Live, Outcome
from hypermesh.registry.client import API, RegistryClient, refusal
from hypermesh.transport.address import PeerRef, format_address, parse_address
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.identity import (
    KEY_FILE,
    Identity,
    load_identity,
    load_or_create_identity,
    read_node_id,
)

CONFIG = "config.json"
JOINED = "joined.json"
"""In a node's folder once it joined its remote registry by token: it is not asked again."""
RECORD_LIFETIME_ENV = "HM_RECORD_LIFETIME"
"""Seconds a node's record lives (default the node's own, 600): short in labs and tests."""
LOG = "node.log"
MAX_RELAYS = 4
"""Relays named in one node's config at most."""
MAX_PEERS = 8
"""Other mirrors named in a node's config for failover."""
RELOAD_ENV = "HM_RELOAD"
"""``off``: a node whose network changed is restarted, as before live reloads (benchmarks
compare the two); otherwise it reloads its config in place when only its network changed."""


class NodeProcessDriver:
    """Starts, observes, reloads, restarts and stops node processes."""

    kinds: tuple[str, ...] = ("Node",)
    manages_world: bool = True

    def __init__(
        self,
        state_dir: Path,
        *,
        python: str = sys.executable,
        start_timeout: float = 20.0,
        probe_timeout: float = 3.0,
        stop_timeout: float = 5.0,
        reload_timeout: float = 5.0,
        placement: Placement | None = None,
        join_token: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.placement = placement or Placement()
        """The host this controller runs for: its Nodes are started here, the others not."""
        self.join_token = join_token
        """The token nodes join a remote registry with (never logged or put in a status)."""
        self.directory = StandaloneDirectory(state_dir, self.placement)
        """Where the nodes' folders are; other members' keys are read (or made) through it."""
        self.python = python
        self.start_timeout = start_timeout
        self.probe_timeout = probe_timeout
        self.stop_timeout = stop_timeout
        self.reload_timeout = reload_timeout
        """Seconds a node has to report the config it was told to reload, before a restart."""
        self._children: dict[int, Child] = {}
        self._forks = ForkServer(python)
        """Where nodes are forked from (``drivers.forkserver``), the plain spawn without it."""
        self._desired: DesiredState | None = None
        self._node_ids: dict[ResourceKey, str] = {}
        """Members' node IDs, read once per pass (every node's config names every member)."""
        self.statuses = StatusConnections()
        """The nodes' ``/status``, on connections kept while a converge holds them."""

    def hold_connections(self) -> None:
        """Keep a connection to each node observed until ``release_connections``."""
        self.statuses.hold()

    async def release_connections(self) -> None:
        await self.statuses.release()

    def node_dir(self, key: ResourceKey) -> Path:
        return self.directory.node_dir(key.name, key.namespace)

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {"dir": str(self.node_dir(resource.key))}

    def _dir(self, key: ResourceKey, handle: Mapping[str, Any]) -> Path:
        return Path(handle["dir"]) if handle.get("dir") else self.node_dir(key)

    def _reap(self) -> None:
        """Collect exited children so restarts leave no zombies behind."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]

    # -- observe --------------------------------------------------------------------------

    def prepare(self, desired: DesiredState) -> None:
        """The desired state of this pass, to tell when a node's derived config is outdated."""
        self._desired = desired
        self._node_ids = {}
        self.directory.prepare(desired)
        if any(self.placement.is_local(n) for n in desired.of_kind("Node")):
            self._forks.prestart()  # it imports while the pass plans and observes

    def _outdated(self, key: ResourceKey, node_dir: Path) -> str | None:
        """Why the node's running config no longer matches what its network says (members
        and their keys, interface policies, federation, the other mirrors), or None."""
        if self._desired is None:
            return None
        resource = self._desired.get("Node", key.name, key.namespace)
        if resource is None:
            return None
        try:
            running = json.loads((node_dir / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        context = ApplyContext(self._desired, 0)
        derived = self._interfaces_of(resource, context, str(resource.spec["listen"]))
        derived = {k: v for k, v in derived.items() if k in _DERIVED}  # values of its own
        if "federation" in derived:  # as the config file has it (``NodeConfig.to_json``)
            derived["federation"] = [
                {"name": f.name, "registry": f.registry.to_dict()} for f in derived["federation"]
            ]
        derived["peers"] = [peer.to_dict() for peer in self._peers_of(resource, context)]
        wanted = json.loads(json.dumps(derived))
        changed = [
            field
            for field, empty in _DERIVED.items()
            if wanted.get(field, empty) != running.get(field, empty)
        ]
        if not changed:
            return None
        return f"the network's members or policies changed ({', '.join(changed)})"

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        self._reap()
        node_dir = self._dir(key, handle)
        pid = running_pid(node_dir)
        if pid is None:
            return Live(
                exists=False,
                drift=(Drift(DriftKind.MISSING, "process not running"),),
                ready=False,
                reason="NotRunning",
                message="node process is not running",
            )
        runtime = read_runtime(node_dir)
        address = runtime.address if runtime else None
        identity = read_node_id(node_dir)
        base: dict[str, Any] = {"pid": pid, "identity": identity}
        if runtime is None or address is None or runtime.pid != pid:
            return Live(True, (), base, False, "Starting", "node has not reported its address")
        base["address"] = address
        base["startedAt"] = runtime.started_at
        if runtime.web:
            base["webAddress"] = runtime.web
        if runtime.private:
            base["privateAddress"] = runtime.private
        if runtime.ephemeral:
            base["ephemeralAddress"] = runtime.ephemeral
        if applied is not None and _listen_changed(applied, address):
            return Live(
                True,
                (Drift(DriftKind.OUTDATED, "listen address differs from the spec"),),
                base,
                True,
            )
        try:
            status = await self.statuses.status(
                address, identity, pid, functools.partial(_operator, node_dir), self.probe_timeout
            )
        except IdentityMismatch as exc:
            return Live(True, (), base, False, "IdentityMismatch", str(exc))
        except TransportError as exc:
            return Live(True, (), base, False, "Unreachable", str(exc))
        if status.get("identity") != identity or status.get("pid") != pid:
            message = "the status endpoint answers for another process"
            return Live(True, (), base, False, "WrongNode", message)
        if isinstance(status.get("zones"), dict):
            base["zones"] = status["zones"]  # the serial of each zone served
        mirror = status.get("mirror")
        if isinstance(mirror, dict):
            base["mirror"] = {
                k: mirror.get(k) for k in ("connected", "transfers", "lastError", "refused")
            }
        outdated = self._outdated(key, node_dir)
        if outdated is not None:
            return Live(
                True, (Drift(DriftKind.OUTDATED, outdated),), base, True, "Running", outdated
            )
        readiness = status.get("readiness")
        if isinstance(readiness, dict) and readiness.get("ready") is False:
            reason, why = readiness.get("reason"), readiness.get("message")
            return Live(True, (), base, False, str(reason or "NotReady"), str(why or ""))
        return Live(True, (), base, True, "Running", f"serving on {address}")

    # -- apply ----------------------------------------------------------------------------

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        key = resource.key
        node_dir = self._dir(key, handle)
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_pinned(resource, node_dir)
        await self._join(resource, context, node_dir)
        listen = str(resource.spec["listen"])
        try:
            config = self._config(resource, context, node_dir, listen)
        except ValueError as exc:  # the schemas refuse such specs first; never a traceback
            raise PermanentError(
                f"{key}: the node's config is invalid: {exc}", reason="InvalidConfig"
            ) from exc
        text = config.to_json()
        reloaded, why = await self._reload(node_dir, text)
        if reloaded is not None:
            return Outcome(
                handle={"dir": str(node_dir)},
                status=reloaded,
                message=f"node reloaded its config on {reloaded['address']} "
                f"(pid {reloaded['pid']})",
            )
        await self._stop_dir(node_dir)
        write_atomic(node_dir / CONFIG, text, durable=False)
        child = self._spawn(node_dir)
        status = await self._wait_started(key, node_dir, child)
        started = f"node started on {status['address']} (pid {status['pid']})"
        return Outcome(
            handle={"dir": str(node_dir)},
            status=status,
            message=started if why is None else f"{started}; {why}",
        )

    async def _reload(self, node_dir: Path, text: str) -> tuple[dict[str, Any] | None, str | None]:
        """Have the running node take ``text`` without a restart, when only what a running
        node can take differs from the config it runs (``node.reload``: members, policies,
        federation, peers) and the node can reload (its ``/status`` reports a
        ``configDigest``; a node of an older version would die of SIGHUP): write it, send
        SIGHUP and wait (at most ``reload_timeout``) for its ``/status`` to report the new
        config's digest. (its status, None) once it does; (None, why) when the node is to be
        restarted instead (why None: no reload was tried)."""
        if os.environ.get(RELOAD_ENV, "").lower() in ("off", "restart", "0", "no"):
            return None, None
        pid, runtime = running_pid(node_dir), read_runtime(node_dir)
        if pid is None or runtime is None or runtime.pid != pid:
            return None, None
        try:
            running = fields_of(NodeConfig.load(node_dir / CONFIG).to_json())
        except (OSError, ValueError):
            return None, None
        if not reloadable(running, fields_of(text)):
            return None, None
        probe = _Probe(
            runtime.address, read_node_id(node_dir), _operator(node_dir), pid, self.probe_timeout
        )
        first = await probe.status()
        if first is None or "configDigest" not in first:
            return None, None
        write_atomic(node_dir / CONFIG, text, durable=False)
        digest = config_digest(text)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + self.reload_timeout
        while time.monotonic() < deadline and pid_alive(pid):
            status = await probe.status()
            if status is not None and status.get("configDigest") == digest:
                return _started_status(runtime, probe.identity, pid), None
            refused = status.get("reloadRefused") if status is not None else None
            if isinstance(refused, dict) and refused.get("digest") == digest:
                return None, f"restarted: the node refused the reload ({refused.get('error')})"
            await asyncio.sleep(0.02)
        return None, f"restarted: the node did not reload within {self.reload_timeout:g}s"

    def _config(
        self,
        resource: Resource,
        context: ApplyContext,
        node_dir: Path,
        listen: str,
    ) -> NodeConfig:
        """The node's config: its spec, and what its network gives it. Asked for any port, the
        node tries the one it had last first (``ports.json``, kept across restarts)."""
        return NodeConfig(
            name=resource.name,
            network=str(resource.spec["network"]),
            listen=listen,
            prefer_port=previous_port(node_dir, listen),
            interfaces=tuple(resource.spec.get("interfaces", ())),
            roles=tuple(resource.spec.get("roles", ())),
            tags=tuple(resource.spec.get("tags", ())),
            generation=context.generation,
            node_dir=str(node_dir),
            log_file=str(node_dir / LOG),
            web_listen=_web_listen(resource.spec, listen),
            registry=self._registry_of(resource, context),
            host_name=node_host(resource),
            advertise=tuple(str(a) for a in resource.spec.get("advertise", ())),
            network_mode=_mode_of(resource, context.desired),
            **_record_lifetime(),
            **self._interfaces_of(resource, context, listen),
            chain=bool((resource.spec.get("chain") or {}).get("enabled", True)),
            witnesses=int((resource.spec.get("chain") or {}).get("witnesses", 0)),
            peers=self._peers_of(resource, context),
            relays=self._relays_of(resource, context),
        )

    def _registry_of(self, resource: Resource, context: ApplyContext) -> Upstream | None:
        """The registry this node mirrors: its Network's registry, unless it is the registry."""
        if "registry" in resource.spec.get("roles", ()):
            return None
        network = context.desired.get("Network", str(resource.spec["network"]), resource.namespace)
        registry = dict((network.spec.get("registry") or {}) if network else {})
        if registry.get("node") == resource.name:
            return None
        if not registry and network is not None and network.spec.get("mode") == "public":
            try:
                registry = load_bootstrap().registry()  # the public registry
            except BootstrapError as exc:
                raise PermanentError(str(exc), reason="BadBootstrap") from None
        return self._upstream(registry, resource.namespace)

    def _interfaces_of(
        self, resource: Resource, context: ApplyContext, listen: str
    ) -> dict[str, Any]:
        """What the node's gates need (``drivers.nodeconfig``): the network's members by the
        keys in their directories (made here if the node has not started yet, so every member
        is known to every other from the first start on), a local registry by its directory;
        the private and ephemeral interfaces on the public host, at any free port."""
        host = parse_address(listen)[0]
        any_port = format_address(host, 0)
        return interfaces_of(
            resource,
            context.desired,
            identity_of=self._node_id,
            registry_upstream=lambda registry: self._upstream(registry, resource.namespace),
            private_listen=any_port,
            ephemeral_listen=any_port,
        )

    def _node_id(self, node: Resource) -> str | None:
        """A member's node ID, its key made here if the node has not started yet (so every
        member is known to every other from the first start on); read once per pass."""
        pinned = node.spec.get("identity")
        if pinned:
            return str(pinned)  # what the manifests say (a local key must match: _check_pinned)
        if not self.placement.is_local(node):
            return None  # a remote node joins by token; its key is on its own host
        found = self._node_ids.get(node.key)
        if found is None:
            found = self.directory.ensure_node_id(node.name, node.namespace)
            self._node_ids[node.key] = found
        return found

    def _upstream(self, registry: Mapping[str, Any], namespace: str) -> Upstream | None:
        """Where a Network's registry answers: a node of this state by its directory (so a
        restart on another port is followed), a remote one by its endpoint and key."""
        if "node" in registry:
            key = ResourceKey("Node", str(registry["node"]), namespace)
            node = self._desired.get("Node", key.name, namespace) if self._desired else None
            if node is not None and not self.placement.is_local(node):
                address, pinned = reachable_address(node), node.spec.get("identity")
                if address and pinned:
                    return Upstream(PeerRef(address, str(pinned)))
                return None  # validation asks for both; nothing to dial without them
            return Upstream(node_dir=str(self.node_dir(key)))
        if registry.get("endpoint") and registry.get("identity"):
            return Upstream(PeerRef(str(registry["endpoint"]), str(registry["identity"])))
        return None

    def _peers_of(self, resource: Resource, context: ApplyContext) -> tuple[Upstream, ...]:
        """Other mirrors of the same network (at most ``MAX_PEERS``), to copy zones from
        while the registry is out of reach."""
        peers = [
            Upstream(node_dir=str(self.node_dir(other.key)))
            for other in context.desired.of_kind("Node")
            if other.key != resource.key
            and self.placement.is_local(other)
            and other.spec.get("network") == resource.spec.get("network")
            and "registry" not in other.spec.get("roles", ())
        ]
        return tuple(peers[:MAX_PEERS])

    def _relays_of(self, resource: Resource, context: ApplyContext) -> tuple[Upstream, ...]:
        """The relay-role Nodes of the same network (at most ``MAX_RELAYS``, by name), which
        the node attaches to (the first that answers is its home relay); none for a relay.
        Without any, a node looks for relays in the node directory."""
        if "relay" in resource.spec.get("roles", ()):
            return ()
        found = [
            self._upstream({"node": other.name}, resource.namespace)
            for other in sorted(context.desired.of_kind("Node"), key=lambda n: n.name)
            if other.key != resource.key
            and other.spec.get("network") == resource.spec.get("network")
            and "relay" in other.spec.get("roles", ())
        ]
        return tuple(u for u in found if u is not None)[:MAX_RELAYS]

    async def _join(self, resource: Resource, context: ApplyContext, node_dir: Path) -> None:
        """Join a registry on another host with the join token, once, before the first start
        (``POST /registry/v1/join``, signed by the node's own key): for a node without a pinned
        identity whose registry is not a node of this host. Without a token nothing is asked
        (a public network registers any key). A refusal stalls the Node with the registry's
        words; the token itself never appears in an error, a status or a log."""
        if self.join_token is None or resource.spec.get("identity") or (node_dir / JOINED).exists():
            return
        upstream = self._registry_of(resource, context)
        if upstream is None or upstream.peer is None:
            return  # its registry is a node of this host, or none is reachable from here
        where = upstream.peer
        key = resource.key
        identity = load_or_create_identity(node_dir)
        body = {"token": self.join_token, "name": resource.name, "host": node_host(resource)}
        client = RegistryClient(where.address, where.node_id, identity=identity)
        try:
            status, data = await client.call("POST", f"{API}/join", body, signer=identity)
        except TransportError as exc:
            raise TemporaryError(
                f"{key}: joining the registry at {where.address}: {exc}", reason="JoinPending"
            ) from exc
        if status in (200, 201):
            member = data.get("member") if isinstance(data.get("member"), dict) else {}
            joined = {"registry": where.node_id, "address": where.address, "member": member}
            write_atomic(node_dir / JOINED, json.dumps(joined, indent=2) + "\n")
            return
        words = refusal(status, data)
        if status >= 500:
            raise TemporaryError(
                f"{key}: the registry failed the join: {words}", reason="JoinFailed"
            )
        raise PermanentError(
            f"{key}: the registry at {where.address} refused the join token: {words}; the node "
            "is not started (give a valid token: --join-token-file or $HM_JOIN_TOKEN)",
            reason="JoinRefused",
        )

    def _spawn(self, node_dir: Path) -> Child:
        """Start the node of ``node_dir``: forked from the fork server when there is one, else
        ``python -m hypermesh.node``; either way a process of its own, in its own session."""
        child: Child | None = None
        if self._forks.available():
            with contextlib.suppress(ForkServerError):
                child = self._forks.spawn(node_dir / CONFIG, node_dir, node_dir / LOG)
        if child is None:
            child = self._popen(node_dir)
        self._children[child.pid] = child
        return child

    def _popen(self, node_dir: Path) -> subprocess.Popen[bytes]:
        with (node_dir / LOG).open("ab") as log:
            return subprocess.Popen(
                [self.python, "-m", "hypermesh.node", "--config", str(node_dir / CONFIG)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                cwd=node_dir,
            )

    async def _wait_started(self, key: ResourceKey, node_dir: Path, child: Child) -> dict[str, Any]:
        """Wait for the node to report its address and answer its ``/status``; a node that
        runs but does not answer in time (its host busy starting its peers) is asked again
        until ``start_timeout``, rather than failing the pass (which would then observe
        every node once more)."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = child.poll()
            if code is not None:
                raise TemporaryError(
                    f"node process exited with code {code}: {_last_line(node_dir / LOG)}",
                    reason="StartFailed",
                )
            runtime = read_runtime(node_dir)
            if runtime is not None and runtime.pid == child.pid:
                identity = read_node_id(node_dir)
                try:
                    await self.statuses.status(
                        runtime.address,
                        identity,
                        child.pid,
                        functools.partial(_operator, node_dir),
                        self.probe_timeout,
                    )
                except TransportError as exc:
                    if isinstance(exc, IdentityMismatch) or time.monotonic() >= deadline:
                        raise TemporaryError(
                            f"node started but its status endpoint failed: {exc}",
                            reason="Unreachable",
                        ) from exc
                    # it runs but has not answered yet (a loaded host): ask again, after a pause
                else:
                    return _started_status(runtime, identity, child.pid)
            await asyncio.sleep(0.05)
        await self._stop_dir(node_dir)
        raise TemporaryError(
            f"node did not report its address within {self.start_timeout:.0f}s "
            f"(log: {node_dir / LOG})",
            reason="StartTimeout",
        )

    # -- stop / delete --------------------------------------------------------------------

    async def _stop_dir(self, node_dir: Path) -> bool:
        pid = running_pid(node_dir)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            self._reap()
            # The lock goes first, the process a moment later: wait for both.
            if running_pid(node_dir) is None and not pid_alive(pid):
                return True
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while (
            running_pid(node_dir) is not None or pid_alive(pid)
        ) and time.monotonic() < deadline + 5:
            self._reap()
            await asyncio.sleep(0.05)
        self._reap()
        return True

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        return await self._stop_dir(self._dir(key, handle))

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        """Stop the node and remove its directory: key, databases, config, logs, runtime
        file. A process that does not die keeps its directory, and the error says so."""
        node_dir = self._dir(key, handle)
        await self._stop_dir(node_dir)
        pid = running_pid(node_dir)
        if pid is not None:
            raise TemporaryError(
                f"node process {pid} did not stop; {node_dir} is kept until it does",
                reason="StopFailed",
            )
        shutil.rmtree(node_dir, ignore_errors=True)
        if node_dir.exists():
            raise TemporaryError(f"could not remove {node_dir}", reason="DeleteFailed")


def _check_pinned(resource: Resource, node_dir: Path) -> None:
    """A Node with ``spec.identity`` starts only with that key: its key here (made now if it
    has none) must be the pinned one, or nothing is started and the error names both."""
    pinned = resource.spec.get("identity")
    if not pinned:
        return
    actual = load_or_create_identity(node_dir).node_id
    if actual != pinned:
        raise PermanentError(
            f"{resource.key}: spec.identity pins {pinned}, but the node's key on this host is "
            f"{actual} ({node_dir / KEY_FILE}); install the pinned key there, or pin this one "
            f"(hmctl keys show {resource.name}); the node is not started",
            reason="IdentityMismatch",
        )


@dataclass(frozen=True, slots=True)
class _Probe:
    """Asks one node process for its ``/status``, as its operator."""

    address: str
    identity: str | None
    operator: Identity | None
    pid: int
    wait: float
    """Seconds one answer may take."""

    async def status(self) -> dict[str, Any] | None:
        """The node's status; None when it does not answer, or another process does."""
        try:
            status = await h3_get_json(
                self.address,
                "/status",
                expected_id=self.identity,
                timeout=self.wait,
                identity=self.operator,
            )
        except TransportError:
            return None
        return status if status.get("pid") == self.pid else None


def _started_status(runtime: RuntimeInfo, identity: str | None, pid: int) -> dict[str, Any]:
    """What the Node's status says of a node that serves: where, as whom, which process."""
    started = {
        "address": runtime.address,
        "identity": identity,
        "pid": pid,
        "startedAt": runtime.started_at,
    }
    return (
        started
        | ({"webAddress": runtime.web} if runtime.web else {})
        | ({"privateAddress": runtime.private} if runtime.private else {})
        | ({"ephemeralAddress": runtime.ephemeral} if runtime.ephemeral else {})
    )


def _mode_of(resource: Resource, desired: DesiredState) -> str:
    """The mode of the node's Network (private when it is not declared)."""
    network = desired.get("Network", str(resource.spec["network"]), resource.namespace)
    return str(network.spec.get("mode", "private")) if network is not None else "private"


def _record_lifetime() -> dict[str, Any]:
    """``record_lifetime`` from ``$HM_RECORD_LIFETIME`` when set (the node config bounds it),
    else nothing (the node's default)."""
    text = os.environ.get(RECORD_LIFETIME_ENV)
    if not text:
        return {}
    try:
        return {"record_lifetime": float(text)}
    except ValueError:
        raise PermanentError(
            f"${RECORD_LIFETIME_ENV} must be a number of seconds: {text[:40]!r}",
            reason="InvalidConfig",
        ) from None


def _listen_changed(applied: Mapping[str, Any], address: str) -> bool:
    """True when the spec pins a port and the node is not on it (port 0 accepts any)."""
    try:
        want_host, want_port = parse_address(str(applied.get("listen", "")))
        host, port = parse_address(address)
    except ValueError:
        return False
    return want_port != 0 and (want_port, want_host) != (port, host)


def _operator(node_dir: Path) -> Identity | None:
    """The node's own key, which the controller presents when it observes the node, so that
    the node's interface policies never refuse its operator."""
    try:
        return load_identity(node_dir / KEY_FILE)
    except (OSError, HyperMeshError):
        return None


def _web_listen(spec: Mapping[str, Any], listen: str) -> str | None:
    """Where the node serves its read-only pages over TCP: ``spec.web.listen``; by default a
    registry serves its page on its QUIC host, any free port; other nodes do not."""
    web = spec.get("web")
    if isinstance(web, Mapping) and web.get("listen"):
        return str(web["listen"])
    if "registry" in spec.get("roles", ()):
        host, _ = parse_address(listen)
        return format_address(host, 0)
    return None


_DERIVED: dict[str, Any] = {
    "directory": {},
    "private_listen": None,
    "private_policy": None,
    "public_policy": None,
    "ephemeral_listen": None,
    "ephemeral_policy": None,
    "federation": [],
    "peers": [],
}
"""Fields of a node's config that come from other resources, with their value when absent."""


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("msg"):
                return str(record["msg"])
        if line.strip():
            return line.strip()[-300:]
    return "(empty log)"
