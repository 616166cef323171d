"""The forwarding cache: what a mirror holds no copy of is asked of the registry and kept for
its TTL (negative answers for the SOA's negative TTL), purged when the zone's copy arrives."""

from __future__ import annotations

import asyncio

import dns.edns
import dns.message
import dns.name
import dns.rcode
import pytest

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.source import StaticZones
from hypermesh.mirror.cache import ForwardingCache
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.address import PeerRef
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity
from tests.harness.nodes import NodeProc, Owner, answer_values

LOCAL = DnsEngine(StaticZones())  # a mirror that holds no copy: REFUSED for everything


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(cache: ForwardingCache, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    wire = query.to_wire()
    local = LOCAL.answer(wire)
    assert local is not None
    answer = cache.answer(wire, local)
    if not isinstance(answer, bytes):
        answer = asyncio.run(answer)  # type: ignore[arg-type]
    message = dns.message.from_wire(answer)
    assert message.id == query.id
    return message


def test_answers_are_kept_for_their_ttl_and_purged_when_the_zone_arrives(
    network: dict[str, NodeProc],
) -> None:
    registry = network["registry"]
    owner = Owner(registry)
    owner.register("acme")
    owner.put("acme", "www", "192.0.2.1")
    clock = Clock()
    cache = ForwardingCache(
        lambda: PeerRef(registry.address, registry.identity), clock=clock, identity=None
    )

    first = ask(cache, "www.acme.")
    assert answer_values(first) == {"192.0.2.1"} and first.answer[0].ttl == 60
    clock.now += 10
    again = ask(cache, "www.acme.")
    assert (cache.hits, cache.misses) == (1, 1)
    assert answer_values(again) == {"192.0.2.1"} and again.answer[0].ttl == 50  # counted down

    missing = ask(cache, "late.acme.")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    negative_ttl = missing.authority[0].ttl
    assert 0 < negative_ttl <= 300
    owner.put("acme", "late", "192.0.2.2")
    # Within the negative TTL the cached NXDOMAIN stands (RFC 2308) ...
    assert ask(cache, "late.acme.").rcode() == dns.rcode.NXDOMAIN
    # ... until the zone's pushed copy purges it.
    cache.zone_changed(dns.name.from_text("acme."), None)
    assert len(cache) == 0
    assert answer_values(ask(cache, "late.acme.")) == {"192.0.2.2"}
    # And past the TTL an answer is asked for again.
    misses = cache.misses
    clock.now += 61
    ask(cache, "late.acme.")
    assert cache.misses == misses + 1


def test_names_outside_the_registry_and_an_unreachable_registry() -> None:
    outside = ForwardingCache(lambda: None, lambda name: False, identity=None)
    assert ask(outside, "www.nowhere.").rcode() == dns.rcode.REFUSED
    assert outside.misses == 0  # not even asked

    gone = ForwardingCache(
        lambda: PeerRef("127.0.0.1:9", Identity.generate().node_id), identity=None
    )
    failed = ask(gone, "www.acme.")
    assert failed.rcode() == dns.rcode.SERVFAIL
    codes = {o.code for o in failed.options if isinstance(o, dns.edns.EDEOption)}
    assert codes == {dns.edns.EDECode.NO_REACHABLE_AUTHORITY}
    assert len(gone) == 0


@pytest.mark.parametrize("late", [True, False])
def test_doq_answers_that_arrive_later(late: bool) -> None:
    """The endpoint sends an answer the engine hands back as an awaitable."""

    async def main() -> bytes:
        identity = Identity.generate()

        def answer(query: bytes) -> object:
            response = dns.message.make_response(dns.message.from_wire(query)).to_wire()

            async def later() -> bytes:
                await asyncio.sleep(0.05)
                return response

            return later() if late else response

        endpoint = await bind_endpoint(
            "127.0.0.1",
            0,
            configuration=server_configuration(identity),
            router=Router(),
            dns_answer=answer,  # type: ignore[arg-type]
        )
        try:
            query = dns.message.make_query("www.acme.", "A")
            return await doq_query(
                endpoint.address, query.to_wire(), expected_id=identity.node_id, identity=None
            )
        finally:
            endpoint.close()

    assert dns.message.from_wire(asyncio.run(main())).rcode() == dns.rcode.NOERROR
