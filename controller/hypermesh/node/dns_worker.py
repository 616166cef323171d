"""A DNS worker process of a node (``dns_workers``): the node's QUIC endpoint offering DNS over
QUIC only, on the UDP socket the node handed it, answering from the zones the node sends
(``hypermesh.dns.workers``). Run by the node as ``python -m hypermesh.node.dns_worker``."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable, Mapping
from typing import Any

from hypermesh.dns.doq import DOQ_ALPN
from hypermesh.dns.workers import worker_main
from hypermesh.node.limits import EndpointLimits
from hypermesh.node.router import Router
from hypermesh.node.server import EndpointStats, NodeProtocol, server_configuration
from hypermesh.transport.endpoint import MeshEndpoint
from hypermesh.transport.identity import Identity
from hypermesh.transport.udp import tune_datagram_transport

MODULE = __name__ if __name__ != "__main__" else "hypermesh.node.dns_worker"
"""What the node runs (``python -m``) for each worker."""


async def open_endpoint(
    identity: Identity,
    limits: Mapping[str, Any],
    answer: Callable[[bytes], bytes | None],
    sock: socket.socket,
) -> Callable[[], None]:
    """The node's endpoint on ``sock`` (ALPN ``doq`` only, no HTTP routes, no gate), presenting
    ``identity``'s self-signed certificate; returns what closes it."""
    configuration = server_configuration(identity)
    configuration.alpn_protocols = [DOQ_ALPN]
    create_protocol = functools.partial(
        NodeProtocol,
        router=Router(),
        dns_answer=answer,
        limits=EndpointLimits.from_dict(dict(limits)),
        stats=EndpointStats(),
    )
    transport, server = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: MeshEndpoint(configuration=configuration, create_protocol=create_protocol),
        sock=sock,
    )
    tune_datagram_transport(transport)
    return server.close


if __name__ == "__main__":
    raise SystemExit(worker_main(open_endpoint))
