"""The NAT-PMP client against a small NAT-PMP gateway of the test's own, on loopback: RFC
6886's retries, giving up quietly where nothing answers, renewal at half the lifetime, mapping
again when the gateway's epoch says it restarted, and deletion on close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import pytest

from hypermesh.transport.portmap import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    NatPmpClient,
    PortMapping,
    Refused,
    Result,
    parse_request,
)

EXTERNAL = "203.0.113.9"
EXTERNAL_PORT = 14433
"""The port the gateway maps (not the one suggested: the client must use what it is given)."""


@dataclass
class Gateway(asyncio.DatagramProtocol):
    """Answers NAT-PMP like a home router: ``drop`` requests unanswered first, ``refuse`` with a
    result code, ``lifetime`` granted at most; ``restart()`` resets its epoch and mappings."""

    drop: int = 0
    refuse: Result | None = None
    lifetime: int = 7200
    garbage: bool = False
    requests: list[object] = field(default_factory=list)
    mappings: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def restart(self) -> None:
        self.started, self.mappings = time.monotonic(), {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = parse_request(data)
        self.requests.append(request)
        if self.drop > 0:
            self.drop -= 1
            return
        assert self.transport is not None
        if self.garbage:
            self.transport.sendto(b"\x00\x80\x00", addr)  # short: ignored by the client
        epoch = int(time.monotonic() - self.started)
        result = self.refuse or Result.SUCCESS
        if isinstance(request, ExternalAddressRequest):
            self.transport.sendto(ExternalAddressResponse(result, epoch, EXTERNAL).to_wire(), addr)
            return
        assert isinstance(request, MapRequest)
        granted = min(request.lifetime, self.lifetime)
        if granted == 0:
            self.mappings.pop(request.internal_port, None)
            external = 0
        else:
            external = self.mappings.setdefault(request.internal_port, EXTERNAL_PORT)
        answer = MapResponse("udp", result, epoch, request.internal_port, external, granted)
        self.transport.sendto(answer.to_wire(), addr)

    def maps(self) -> list[MapRequest]:
        return [r for r in self.requests if isinstance(r, MapRequest)]


async def until(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether ``check()`` came true within ``seconds`` (looked at every 20 ms)."""
    for _ in range(int(seconds / 0.02)):
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


def with_gateway(
    test: Callable[[Gateway, Callable[..., NatPmpClient]], Awaitable[None]], **options: object
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, gateway = await loop.create_datagram_endpoint(
            lambda: Gateway(**options),  # type: ignore[arg-type]
            local_addr=("127.0.0.1", 0),
        )
        port = transport.get_extra_info("sockname")[1]

        def client(**kwargs: object) -> NatPmpClient:
            return NatPmpClient(
                4433,
                gateway="127.0.0.1",
                bind="127.0.0.1",
                server_port=port,
                **kwargs,  # type: ignore[arg-type]
            )

        try:
            await test(gateway, client)
        finally:
            transport.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_mapping_is_asked_for_the_nodes_port_and_deleted_on_close() -> None:
    async def test(gateway: Gateway, client: Callable[..., NatPmpClient]) -> None:
        seen: list[PortMapping | None] = []
        pmp = client(on_change=seen.append)
        task = asyncio.create_task(pmp.run())
        assert await until(lambda: bool(seen))
        mapping = seen[0]
        assert mapping is not None
        assert (mapping.address, mapping.internal_port) == (f"{EXTERNAL}:14433", 4433)
        assert (mapping.lifetime, mapping.protocol) == (7200, "nat-pmp")
        assert gateway.maps()[0] == MapRequest("udp", 4433, 4433, 7200)
        task.cancel()
        await pmp.aclose()
        assert gateway.maps()[-1] == MapRequest("udp", 4433, 0, 0)
        assert gateway.mappings == {}
        assert seen == [mapping, None]

    with_gateway(test)


def test_requests_are_sent_again_until_answered() -> None:
    async def test(gateway: Gateway, client: Callable[..., NatPmpClient]) -> None:
        pmp = client()
        mapping = await pmp.map()
        assert mapping.external == EXTERNAL
        assert len(gateway.requests) == 4  # two unanswered, the third answered; then the map

    with_gateway(test, drop=2, garbage=True)


def test_nothing_answering_is_given_up_quietly_after_three_tries() -> None:
    async def test(gateway: Gateway, client: Callable[..., NatPmpClient]) -> None:
        seen: list[PortMapping | None] = []
        pmp = client(on_change=seen.append)
        await pmp.run()  # returns: no NAT-PMP here
        assert len(gateway.requests) == 3
        assert pmp.mapping is None and seen == []
        assert pmp.last_error is not None and "no NAT-PMP answer" in pmp.last_error

    with_gateway(test, drop=100)


def test_a_refusal_is_named() -> None:
    async def test(gateway: Gateway, client: Callable[..., NatPmpClient]) -> None:
        with pytest.raises(Refused, match="network failure") as caught:
            await client().map()
        assert caught.value.result is Result.NETWORK_FAILURE

    with_gateway(test, refuse=Result.NETWORK_FAILURE)


def test_the_mapping_is_renewed_at_half_its_lifetime() -> None:
    async def test(gateway: Gateway, client: Callable[..., NatPmpClient]) -> None:
        pmp = client(check_every=0.2)
        task = asyncio.create_task(pmp.run())
        await until(lambda: len(gateway.maps()) >= 3)
        task.cancel()
        await pmp.aclose()
        renewals = gateway.maps()[1:3]
        assert renewals == [MapRequest("udp", 4433, 14433, 7200)] * 2  # the port it was given

    with_gateway(test, lifetime=2)


def test_a_restarted_gateway_is_asked_again_at_once() -> None:
    async def test(gateway: Gateway, client: Callable[..., NatPmpClient]) -> None:
        seen: list[PortMapping | None] = []
        pmp = client(check_every=0.2, on_change=seen.append)
        task = asyncio.create_task(pmp.run())
        assert await until(lambda: bool(seen))
        await asyncio.sleep(3.0)  # the epoch must have moved on to tell a restart
        gateway.restart()
        await until(lambda: bool(gateway.mappings), 5.0)
        task.cancel()
        assert gateway.mappings == {4433: 14433}, "not mapped again after the restart"
        assert len(gateway.maps()) == 2  # well before half of 7200 s

    with_gateway(test)


def test_a_node_asks_from_its_own_address_and_not_on_loopback_or_ipv6() -> None:
    from hypermesh.node.features.paths import _port_mapper

    class Metrics:
        port_mapping = None

    observer = object()
    for bound in ("127.0.0.1:4433", "[::1]:4433", "[2001:db8::1]:4433", "nonsense"):
        assert _port_mapper(bound, observer, Metrics()) is None, bound  # type: ignore[arg-type]
    mapper = _port_mapper("192.168.1.20:4433", observer, Metrics())  # type: ignore[arg-type]
    assert mapper is not None and (mapper.bind, mapper.internal_port) == ("192.168.1.20", 4433)
    anywhere = _port_mapper("0.0.0.0:5000", observer, Metrics())  # type: ignore[arg-type]
    assert anywhere is not None and (anywhere.bind, anywhere.internal_port) == ("0.0.0.0", 5000)
