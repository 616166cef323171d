"""A local validating stub resolver: plain DNS over UDP and TCP for the operating system's
resolver, HyperMesh names answered only with data checked from the registry's key (AD set),
other names passed to the system's resolvers or refused.

- ``core``: the pure part, wire bytes in and out (parsing, routing, answers, truncation, cache);
- ``upstreams``: resolv.conf, and the upstream resolvers asked (UDP, then TCP on truncation);
- ``service``: ``Resolver``, the core carried out against a ``MeshSource`` and ``Upstreams``;
- ``sources``: ``DoqSource``, a node asked over DNS over QUIC with its key pinned;
- ``listen``: the UDP and TCP sockets, bounded; ``run``: a running stub and its status file.

It runs as a node feature (``spec.resolver`` of a Node) or as ``hmctl resolver run``; see
``docs/clients.md``.
"""

from hypermesh.resolver.core import Outcome, Route
from hypermesh.resolver.run import read_status, running
from hypermesh.resolver.service import MeshSource, Resolver, Settings
from hypermesh.resolver.sources import DoqSource, KeptAnchors
from hypermesh.resolver.upstreams import (
    Upstreams,
    UpstreamUnreachable,
    read_resolv_conf,
    system_upstreams,
)

__all__ = [
    "DoqSource",
    "KeptAnchors",
    "MeshSource",
    "Outcome",
    "Resolver",
    "Route",
    "Settings",
    "UpstreamUnreachable",
    "Upstreams",
    "read_resolv_conf",
    "read_status",
    "running",
    "system_upstreams",
]
