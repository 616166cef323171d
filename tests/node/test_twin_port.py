"""A node whose config says "any port" takes a UDP port whose number is free on TCP too, and
never one its own config names for a TCP listener: the node's TLS listener (DNS over TLS,
HTTP/2, the relay over TCP) takes the UDP port's number on TCP. CI once met a node whose DoT
listener missed its number because a TCP socket elsewhere on loopback held it."""

from __future__ import annotations

import asyncio
import socket

from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration, twin_ports
from hypermesh.transport.identity import Identity

HOST = "127.0.0.1"
EVERY_PORT = frozenset(range(65536))


def _tcp_free(number: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, number))
        except OSError:
            return False
        return True


def test_twin_ports_are_free_on_tcp_and_keep_clear_of_the_avoided() -> None:
    first = twin_ports(HOST, avoid=())
    assert first and all(0 < number < 65536 for number in first)
    assert all(_tcp_free(number) for number in first)
    assert not set(twin_ports(HOST, avoid=first)) & set(first)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((HOST, 0))
        held.listen()
        assert held.getsockname()[1] not in twin_ports(HOST, avoid=())
    assert twin_ports(HOST, avoid=EVERY_PORT) == []  # nothing left: the bind takes any port


def test_an_endpoint_on_any_port_takes_a_number_free_on_tcp_and_not_a_fixed_one() -> None:
    async def bound(avoid: frozenset[int]) -> int:
        endpoint = await bind_endpoint(
            HOST,
            0,
            configuration=server_configuration(Identity.generate()),
            router=Router(),
            tcp_twin=avoid,
        )
        try:
            return endpoint.port
        finally:
            endpoint.close()

    taken = asyncio.run(bound(frozenset()))
    assert 0 < taken < 65536 and _tcp_free(taken)
    # every number avoided: no twin is found and the endpoint still binds, on any free port
    assert 0 < asyncio.run(bound(EVERY_PORT)) < 65536
