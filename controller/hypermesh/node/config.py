"""The node process's configuration: the JSON file the controller writes for each Node."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hypermesh.node.limits import EndpointLimits
from hypermesh.node.runtime import RUNTIME_FILE, read_runtime
from hypermesh.transport.address import PeerRef, format_address, parse_address
from hypermesh.transport.identity import PUBLIC_FILE, read_node_id

LOG_LEVELS = ("debug", "info", "warning", "error")
NETWORK_MODES = ("public", "private", "ephemeral")
MAX_ADVERTISE = 16
MAX_UPSTREAMS = 8
RECORD_LIFETIME_RANGE = (1.0, 86400.0)
"""Seconds a published node record lives: the contract's range is 10..86400, but tests use
records of a few seconds, so the floor is 1."""
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Upstream:
    """Another node this one talks to: ``peer``, where it answers and the node ID it must
    prove; or, on the same machine, its ``node_dir``, whose runtime file and public key are
    read each time (``now``), so that a restart on a new port is followed. Exactly one is set.

    Written in the configuration file as ``{"address", "identity"}`` or ``{"node_dir"}``.
    """

    peer: PeerRef | None = None
    node_dir: str | None = None

    def __post_init__(self) -> None:
        if (self.peer is None) == (self.node_dir is None):
            raise ValueError("an upstream is a peer (address and identity) or a node_dir")
        if self.peer is not None and self.peer.node_id is None:
            raise ValueError(f"upstream {self.peer.address}: its identity is missing")

    def now(self) -> PeerRef | None:
        """Where the node answers now: ``peer``, or what its ``node_dir`` says (None while
        that node does not run; no node ID while its key is not written yet)."""
        if self.peer is not None:
            return self.peer
        assert self.node_dir is not None
        return _local_peer(self.node_dir)

    def to_dict(self) -> dict[str, str]:
        """The configuration file's form (``from_dict`` reads it back)."""
        if self.peer is None:
            return {"node_dir": str(self.node_dir)}
        return {"address": self.peer.address, "identity": str(self.peer.node_id)}

    @classmethod
    def from_dict(cls, data: Any, what: str) -> Upstream:
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str | None) for k in ("address", "identity", "node_dir")
        ):
            raise ValueError(f"{what} must be an object of address, identity or node_dir")
        try:
            if data.get("node_dir") is not None and data.get("address") is None:
                return cls(node_dir=data["node_dir"])
            if data.get("address") is None:
                raise ValueError("an upstream needs address and identity, or node_dir")
            return cls(PeerRef(data["address"], data.get("identity")), data.get("node_dir"))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None


_LOCAL_KEPT = 1024
_local: dict[str, tuple[tuple[int, ...], PeerRef | None]] = {}
"""node_dir → (what its two files' stat said, the PeerRef read from them)."""


def _local_peer(node_dir: str) -> PeerRef | None:
    """``Upstream.now`` of a node on this machine: its runtime file and key read again only
    when they changed (two ``stat`` calls instead of two reads and a parse: a node asks for
    each of its peers often, and a network of 50 lists 49)."""
    directory = Path(node_dir)
    seen: list[int] = []
    for name in (RUNTIME_FILE, PUBLIC_FILE):
        try:
            st = (directory / name).stat()
        except OSError:
            seen.extend((0, 0, 0))
        else:
            seen.extend((st.st_ino, st.st_mtime_ns, st.st_size))
    stamp = tuple(seen)
    kept = _local.get(node_dir)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    runtime = read_runtime(directory)
    peer = None if runtime is None else PeerRef(runtime.address, read_node_id(directory))
    if len(_local) >= _LOCAL_KEPT:
        _local.clear()
    _local[node_dir] = (stamp, peer)
    return peer


@dataclass(frozen=True, slots=True)
class Federated:
    """A network federated with this node's: the name this network gives it, and its registry
    (whose signed anchors list its members)."""

    name: str
    registry: Upstream

    @classmethod
    def from_dict(cls, data: Any, what: str) -> Federated:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError(f"{what} must be an object with a name and a registry")
        return cls(data["name"], Upstream.from_dict(data.get("registry"), f"{what}.registry"))


RESOLVER_LISTEN = "127.0.0.53:53"
"""Where a node's stub resolver listens unless told (systemd-resolved's stub address)."""
SYSTEM_RESOLV_CONF = "/etc/resolv.conf"
"""Where the system's upstream resolvers are read unless told."""


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """The node's local validating stub resolver (``spec.resolver`` of the Node): plain DNS
    over UDP and TCP, HyperMesh names answered verified, others forwarded or refused.

    Written in the configuration file as ``{"listen", "upstreams", "resolv_conf",
    "forward"}``."""

    listen: str = RESOLVER_LISTEN
    """Where it listens, UDP and TCP, ``host:port`` (port 0: any free port, the same for both)."""
    upstreams: tuple[str, ...] | None = None
    """The resolvers other names go to (``host:port`` each); None: the system's, the
    ``nameserver`` lines of ``resolv_conf`` (without the stub's own address)."""
    resolv_conf: str = SYSTEM_RESOLV_CONF
    """The resolv.conf read when ``upstreams`` is None."""
    forward: bool = True
    """Whether names outside the mesh are forwarded (False: REFUSED)."""

    def __post_init__(self) -> None:
        try:
            parse_address(self.listen)
            for address in self.upstreams or ():
                if parse_address(address)[1] == 0:
                    raise ValueError(f"upstream {address!r} needs a port")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"resolver: {exc}") from None
        if self.upstreams is not None and len(self.upstreams) > MAX_UPSTREAMS:
            raise ValueError(f"resolver: at most {MAX_UPSTREAMS} upstreams")
        if not isinstance(self.resolv_conf, str) or not self.resolv_conf.startswith("/"):
            raise ValueError("resolver.resolv_conf must be an absolute path")
        if not isinstance(self.forward, bool):
            raise ValueError("resolver.forward must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return {
            "listen": self.listen,
            "upstreams": list(self.upstreams) if self.upstreams is not None else None,
            "resolv_conf": self.resolv_conf,
            "forward": self.forward,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ResolverConfig:
        if not isinstance(data, dict):
            raise ValueError("resolver must be an object")
        upstreams = data.get("upstreams")
        if upstreams is not None and (
            not isinstance(upstreams, list) or not all(isinstance(u, str) for u in upstreams)
        ):
            raise ValueError("resolver.upstreams must be null or a list of host:port")
        return cls(
            listen=data.get("listen", RESOLVER_LISTEN),
            upstreams=tuple(upstreams) if upstreams is not None else None,
            resolv_conf=data.get("resolv_conf", SYSTEM_RESOLV_CONF),
            forward=data.get("forward", True),
        )


MAX_DNS_WORKERS = 64
"""The most DNS worker processes a node may run (``dns_workers``)."""
DOQ_PORT = 853
"""DNS over QUIC's UDP port (RFC 9250): where the DNS workers listen unless told."""

TLS_DOT_PORT = 853
"""The DNS-over-TLS port (RFC 7858): where ``spec.tls`` listens unless told."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """A TLS listener on TCP with the operator's certificate (``spec.tls`` of the Node): DNS
    over TLS and DNS over HTTPS on HTTP/2 for clients that verify a certificate chain and a
    host name instead of pinning the node's key (Android's Private DNS, browsers).

    Written in the configuration file as ``{"certificate", "key", "listen"}``; the files are
    read and checked when the node starts (``node.tls_tcp.read_certified``), not here."""

    certificate: str
    """The PEM certificate chain, the server's certificate first (an absolute path)."""
    key: str
    """The PEM private key of the first certificate (an absolute path; unencrypted; not
    readable by group or others)."""
    listen: str | None = None
    """Where it listens on TCP, ``host:port`` (port 0: any free one); None: the public
    interface's host, port 853."""

    def __post_init__(self) -> None:
        for name in ("certificate", "key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/"):
                raise ValueError(f"tls.{name} must be an absolute path: {value!r}")
        if self.listen is not None:
            if not isinstance(self.listen, str):
                raise ValueError("tls.listen must be null or host:port")
            try:
                parse_address(self.listen)
            except ValueError as exc:
                raise ValueError(f"tls.listen: {exc}") from None

    def listen_on(self, public_host: str) -> str:
        """Where to listen: ``listen``, or ``public_host`` on port 853."""
        return self.listen if self.listen is not None else format_address(public_host, TLS_DOT_PORT)

    def to_dict(self) -> dict[str, Any]:
        return {"certificate": self.certificate, "key": self.key, "listen": self.listen}

    @classmethod
    def from_dict(cls, data: Any) -> TlsConfig:
        if not isinstance(data, dict):
            raise ValueError("tls must be an object of certificate, key and listen")
        missing = [k for k in ("certificate", "key") if k not in data]
        if missing:
            raise ValueError(f"tls: missing field(s): {', '.join(missing)}")
        return cls(data["certificate"], data["key"], data.get("listen"))


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node process needs to start; validated at construction."""

    name: str
    """The Node resource's name (``metadata.name``)."""
    network: str
    """The name of the Network the node belongs to."""
    listen: str
    """Where to bind the QUIC endpoint, ``host:port`` or ``[v6]:port``; port 0 picks a free one."""
    prefer_port: int | None
    """With port 0: try this port first (the previous run's), so a restart keeps the address."""
    interfaces: tuple[str, ...]
    """Enabled interfaces (``public``, ``private``, ``ephemeral``)."""
    roles: tuple[str, ...]
    """Roles (``registry``, ``relay``, ``mirror``)."""
    tags: tuple[str, ...]
    """Free-form tags that policies can match."""
    generation: int
    """The resource generation this configuration was written for (echoed in status)."""
    node_dir: str
    """The node's own directory: identity, lock and runtime files."""
    log_file: str
    """The file JSON log lines are appended to."""
    log_level: str = "info"
    """The lowest level written to ``log_file``: debug, info, warning or error."""
    web_listen: str | None = None
    """Where to also serve the read-only pages over HTTP/1.1 on TCP (``node.web``); None: not."""
    registry: Upstream | None = None
    """The network's registry, whose zones this node mirrors; None: no mirror (or the node is
    the registry itself)."""
    peers: tuple[Upstream, ...] = ()
    """Other mirrors of the network, to take copies from while the registry is out of reach."""
    private_listen: str | None = None
    """Where to bind the private interface (``host:port``, port 0: any free one); None: the
    node has none."""
    directory: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The Network's Nodes and Peers by name: ``{"kind", "identity", "tags"}``; members are
    admitted on the private interface by the node ID they prove."""
    private_policy: Mapping[str, Any] | None = None
    """The spec of the network's InterfacePolicy for the private interface, if declared."""
    public_policy: Mapping[str, Any] | None = None
    """The spec of the network's InterfacePolicy for the public interface, if declared: its
    rules and rate limits then govern the public endpoint."""
    ephemeral_listen: str | None = None
    """Where to bind the ephemeral interface (anonymous tunnels; ``host:port``, port 0: any
    free one); None: the node has none."""
    ephemeral_policy: Mapping[str, Any] | None = None
    """The spec of the network's InterfacePolicy for the ephemeral interface, if declared."""
    federation: tuple[Federated, ...] = ()
    """Networks federated with this one, whose members the gates admit as ``NAME/MEMBER``."""
    chain: bool = True
    """Whether the node keeps its own chain (``chain.db`` in its directory) and serves it."""
    witnesses: int = 0
    """How many peers should cosign its chain's checkpoints (``spec.chain.witnesses``)."""
    mirror_expire: float | None = None
    """Seconds without word from the registry after which copies are served stale, when
    shorter than the zone's SOA expire (None: the SOA expire alone)."""
    limits: EndpointLimits = field(default_factory=EndpointLimits)
    """What callers may make each of the node's QUIC endpoints hold (unanswered requests,
    header sections, stalled requests); ``limits`` in the file, any subset of the fields."""
    host_name: str | None = None
    """The host that runs the node (the Node's ``spec.host``), published in its record."""
    advertise: tuple[str, ...] = ()
    """Where the public interface is reached from other hosts (``spec.advertise``, host:port
    each): published in the node record instead of the bound address."""
    record_lifetime: float = 600.0
    """Seconds the node's published record lives; it is re-published at half of it."""
    network_mode: str = "private"
    """The Network's mode (public, private or ephemeral): a registry of a public network
    admits node records from any key."""
    relays: tuple[Upstream, ...] = ()
    """Relays to attach to (the first that answers is the home relay); none: the relay-role
    nodes of the node directory."""
    path_keepalive: float = 25.0
    """Seconds between keepalives on direct paths and to the home relay (NAT mappings)."""
    path_observe: float = 30.0
    """Seconds between looks at where the node's packets are seen to come from."""
    resolver: ResolverConfig | None = None
    """The node's local stub resolver (``spec.resolver``); None: the node runs none."""
    tls: TlsConfig | None = None
    """A second TLS listener on TCP with the operator's certificate (``spec.tls``), beside
    the self-signed one on the public port; None: only the self-signed one."""
    dns_workers: int = 1
    """Worker processes answering DNS over QUIC on ``dns_listen``, each on its own socket of
    that UDP port (``SO_REUSEPORT``: the kernel spreads clients over them by address); 1:
    none, DoQ only on the node's own port (``hypermesh.dns.workers``)."""
    dns_listen: str | None = None
    """Where the DNS workers listen on UDP, ``host:port`` (port 0: any free one); None: the
    public interface's host, port 853 (DNS over QUIC's port, RFC 9250)."""
    watch_config: bool = False
    """Watch the config file's directory (inotify) and reload the file, as on ``SIGHUP``, when
    its content changes: a node in a pod, whose ConfigMap volume the kubelet updates in place
    (``node.reload``). False: ``SIGHUP`` only (the standalone controller sends it)."""

    def __post_init__(self) -> None:
        for name in ("name", "network", "listen", "node_dir", "log_file"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        parse_address(self.listen)
        for listen in (self.private_listen, self.ephemeral_listen):
            if listen is not None:
                parse_address(listen)
        if not isinstance(self.directory, Mapping):
            raise ValueError("directory must be an object")
        if self.web_listen is not None:
            if not isinstance(self.web_listen, str):
                raise ValueError("web_listen must be null or host:port")
            parse_address(self.web_listen)
        if self.prefer_port is not None and not (
            _is_int(self.prefer_port) and 0 < self.prefer_port <= 65535
        ):
            raise ValueError("prefer_port must be null or a port number 1-65535")
        for name in ("interfaces", "roles", "tags"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings")
        if not _is_int(self.generation) or self.generation < 0:
            raise ValueError("generation must be a non-negative integer")
        if self.mirror_expire is not None and not (
            isinstance(self.mirror_expire, int | float) and self.mirror_expire > 0
        ):
            raise ValueError("mirror_expire must be null or a positive number of seconds")
        if not isinstance(self.limits, EndpointLimits):
            raise ValueError("limits must be an object of endpoint limits")
        if self.resolver is not None and not isinstance(self.resolver, ResolverConfig):
            raise ValueError("resolver must be null or a resolver object")
        if self.tls is not None and not isinstance(self.tls, TlsConfig):
            raise ValueError("tls must be null or a tls object")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if not isinstance(self.watch_config, bool):
            raise ValueError(f"watch_config must be true or false: {self.watch_config!r}")
        self._check_directory_fields()
        self._check_dns_workers()

    def _check_dns_workers(self) -> None:
        if not _is_int(self.dns_workers) or not 1 <= self.dns_workers <= MAX_DNS_WORKERS:
            raise ValueError(
                f"dns_workers must be a whole number 1-{MAX_DNS_WORKERS}: {self.dns_workers!r}"
            )
        if self.dns_listen is not None:
            if not isinstance(self.dns_listen, str):
                raise ValueError("dns_listen must be null or host:port")
            try:
                parse_address(self.dns_listen)
            except ValueError as exc:
                raise ValueError(f"dns_listen: {exc}") from None

    def _check_directory_fields(self) -> None:
        """The fields of the node directory (issue 16): host name, advertised addresses,
        record lifetime and network mode."""
        if self.host_name is not None and not (
            isinstance(self.host_name, str) and _LABEL.match(self.host_name)
        ):
            raise ValueError(
                f"host_name must be null or a DNS label (a-z, 0-9, '-', at most 63): "
                f"{self.host_name!r}"
            )
        if not isinstance(self.advertise, tuple) or not all(
            isinstance(v, str) for v in self.advertise
        ):
            raise ValueError("advertise must be a list of host:port strings")
        if len(self.advertise) > MAX_ADVERTISE:
            raise ValueError(f"advertise has {len(self.advertise)} addresses, at most 16")
        for i, address in enumerate(self.advertise):
            try:
                _host, port = parse_address(address)
            except ValueError as exc:
                raise ValueError(f"advertise[{i}]: {exc}") from None
            if port == 0:
                raise ValueError(f"advertise[{i}]: {address!r} needs a non-zero port")
        low, high = RECORD_LIFETIME_RANGE
        if (
            not isinstance(self.record_lifetime, int | float)
            or isinstance(self.record_lifetime, bool)
            or not low <= self.record_lifetime <= high
        ):
            raise ValueError(
                f"record_lifetime must be a number of seconds {low:g}..{high:g}: "
                f"{self.record_lifetime!r}"
            )
        if self.network_mode not in NETWORK_MODES:
            raise ValueError(
                f"network_mode must be one of {', '.join(NETWORK_MODES)}: {self.network_mode!r}"
            )
        for name in ("path_keepalive", "path_observe"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0.1:
                raise ValueError(f"{name} must be a number of seconds, at least 0.1: {value!r}")

    @property
    def host(self) -> str:
        """The host part of ``listen``."""
        return parse_address(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen`` (0: any free port)."""
        return parse_address(self.listen)[1]

    @classmethod
    def from_dict(cls, data: Any) -> NodeConfig:
        """Build from decoded JSON; ``ValueError`` naming the first bad or missing field."""
        if not isinstance(data, dict):
            raise ValueError("the configuration must be a JSON object")
        required = (
            "name",
            "network",
            "listen",
            "interfaces",
            "roles",
            "tags",
            "generation",
            "node_dir",
            "log_file",
        )
        missing = [key for key in required if key not in data]
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        lists = {}
        for key in ("interfaces", "roles", "tags"):
            if not isinstance(data[key], list):
                raise ValueError(f"{key} must be a list of strings")
            lists[key] = tuple(data[key])
        return cls(
            name=data["name"],
            network=data["network"],
            listen=data["listen"],
            prefer_port=data.get("prefer_port"),
            interfaces=lists["interfaces"],
            roles=lists["roles"],
            tags=lists["tags"],
            generation=data["generation"],
            node_dir=data["node_dir"],
            log_file=data["log_file"],
            log_level=data.get("log_level", "info"),
            web_listen=data.get("web_listen"),
            registry=(
                Upstream.from_dict(data["registry"], "registry")
                if data.get("registry") is not None
                else None
            ),
            peers=tuple(
                Upstream.from_dict(peer, f"peers[{i}]")
                for i, peer in enumerate(_list(data, "peers"))
            ),
            mirror_expire=data.get("mirror_expire"),
            chain=bool(data.get("chain", True)),
            private_listen=data.get("private_listen"),
            directory=dict(data.get("directory") or {}),
            private_policy=data.get("private_policy"),
            public_policy=data.get("public_policy"),
            ephemeral_listen=data.get("ephemeral_listen"),
            ephemeral_policy=data.get("ephemeral_policy"),
            federation=tuple(
                Federated.from_dict(item, f"federation[{i}]")
                for i, item in enumerate(_list(data, "federation"))
            ),
            witnesses=int(data.get("witnesses", 0)),
            limits=EndpointLimits.from_dict(data.get("limits")),
            host_name=data.get("host_name"),
            advertise=_strings(data, "advertise"),
            record_lifetime=data.get("record_lifetime", 600.0),
            network_mode=data.get("network_mode", "private"),
            relays=tuple(
                Upstream.from_dict(relay, f"relays[{i}]")
                for i, relay in enumerate(_list(data, "relays"))
            ),
            path_keepalive=data.get("path_keepalive", 25.0),
            path_observe=data.get("path_observe", 30.0),
            resolver=(
                ResolverConfig.from_dict(data["resolver"])
                if data.get("resolver") is not None
                else None
            ),
            tls=TlsConfig.from_dict(data["tls"]) if data.get("tls") is not None else None,
            dns_workers=data.get("dns_workers", 1),
            dns_listen=data.get("dns_listen"),
            watch_config=data.get("watch_config", False),
        )

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        """Parse the JSON text the controller wrote; ``ValueError`` when it is not valid."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_json(self) -> str:
        """The JSON text ``from_json`` reads back (lists for tuples, sorted keys, newline).
        Only the endpoint limits that differ from their defaults are written, so a node whose
        limits were never set follows the defaults of the version it runs; ``resolver`` and
        ``tls`` only when set."""
        data = asdict(self)
        data["registry"] = self.registry.to_dict() if self.registry is not None else None
        data["peers"] = [peer.to_dict() for peer in self.peers]
        data["relays"] = [relay.to_dict() for relay in self.relays]
        if self.resolver is None:
            del data["resolver"]  # written only when the node runs one
        else:
            data["resolver"] = self.resolver.to_dict()
        if self.tls is None:
            del data["tls"]  # written only when the node has one
        else:
            data["tls"] = self.tls.to_dict()
        for name, default in (("dns_workers", 1), ("dns_listen", None), ("watch_config", False)):
            if data[name] == default:
                del data[name]  # written only when set
        data["federation"] = [
            {"name": item.name, "registry": item.registry.to_dict()} for item in self.federation
        ]
        defaults = asdict(EndpointLimits())
        limits = {k: v for k, v in data.pop("limits").items() if v != defaults[k]}
        if limits:
            data["limits"] = limits
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        """Read and parse a configuration file; ``ValueError`` or ``OSError`` when impossible."""
        return cls.from_json(path.read_text(encoding="utf-8"))


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list")
    return value


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """An optional list of strings as a tuple; ``ValueError`` naming ``key`` otherwise."""
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return tuple(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
