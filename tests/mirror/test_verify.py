"""The verifying client: answers from an honest mirror check out from the registry's key; a
mirror that serves an altered record, or withholds its signature, is caught."""

from __future__ import annotations

import asyncio
import json

import dns.message
import dns.zone
import pytest

from hypermesh.cli.main import main
from hypermesh.dns.source import StaticZones
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.verify import fetch_anchors, verified_query
from hypermesh.node.router import Request, RouteResponse
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.dns_client import doq_query
from tests.harness.dns_server import ServerThread
from tests.harness.nodes import NodeProc, Owner, answer_values, wait_for


def ask_at(address: str, identity: str):  # type: ignore[no-untyped-def]
    async def ask(message: dns.message.Message) -> dns.message.Message:
        wire = await doq_query(address, message.to_wire(), expected_id=identity, identity=None)
        return dns.message.from_wire(wire)

    return ask


def check(address: str, identity: str, name: str, rdtype: str, anchors: Anchors):  # type: ignore[no-untyped-def]
    query = dns.message.make_query(name, rdtype)
    return asyncio.run(verified_query(ask_at(address, identity), query, anchors))


def test_a_forged_mirror_is_caught(
    network: dict[str, NodeProc], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, m1 = network["registry"], network["m1"]
    owner = Owner(registry)
    owner.register("acme")
    owner.put("acme", "www", "192.0.2.1")
    wait_for(lambda: answer_values(m1.ask("www.acme.")) == {"192.0.2.1"}, what="m1 to mirror")
    # The anchors come from the mirror itself and check out against the registry's key.
    anchors = asyncio.run(fetch_anchors(m1.address, m1.identity, registry.identity, caller=None))
    assert set(anchors.zones) == {"acme.", "_nodes."}  # the TLD and the node directory

    honest = check(m1.address, m1.identity, "www.acme.", "A", anchors)
    assert honest.failure is None and honest.zone == "acme."
    missing = check(m1.address, m1.identity, "nothing.acme.", "A", anchors)
    assert missing.failure is None and missing.response.rcode() == dns.rcode.NXDOMAIN
    nodata = check(m1.address, m1.identity, "www.acme.", "MX", anchors)
    assert nodata.failure is None and not nodata.response.answer

    # A mirror serving the same zone with one address altered (signatures kept as they were).
    data = asyncio.run(
        h3_get_json(
            m1.address,
            "/registry/v1/ixfr?tld=acme.&serial=0",
            expected_id=m1.identity,
            identity=None,
        )
    )
    text = data["zone"].replace("192.0.2.1", "203.0.113.66")
    forged = dns.zone.from_text(text, origin="acme.", relativize=True)

    async def relayed(_: Request) -> RouteResponse:  # a mirror relays the registry's anchors
        return RouteResponse.json(anchors.signed)

    thread = ServerThread(
        StaticZones([forged]), routes=lambda router: router.add("/registry/v1/anchors", relayed)
    )
    server = thread.start()
    try:
        caught = check(server.address, server.identity.node_id, "www.acme.", "A", anchors)
        assert answer_values(caught.response) == {"203.0.113.66"}
        assert caught.failure is not None and "www.acme. A" in caught.failure

        # The command line says so and exits 1.
        code = main(
            [
                "dns",
                "query",
                "www.acme",
                "--address",
                server.address,
                "--identity",
                server.identity.node_id,
                "--verify",
                "--registry-id",
                registry.identity,
                "-o",
                "json",
            ]
        )
        printed = capsys.readouterr()
        assert printed.out.startswith("{"), printed.err
        shown = json.loads(printed.out)
        assert code == 1 and shown["verified"] is False
        assert "www.acme. A" in shown["verification"]
    finally:
        thread.stop()

    code = main(
        [
            "dns",
            "query",
            "www.acme",
            "--address",
            m1.address,
            "--identity",
            m1.identity,
            "--verify",
            "--registry-id",
            registry.identity,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and ";; VERIFIED: zone acme." in out and "192.0.2.1" in out


def test_anchors_signed_by_another_key_are_refused(network: dict[str, NodeProc]) -> None:
    registry, m1 = network["registry"], network["m1"]
    Owner(registry).register("acme")
    from hypermesh.errors import HyperMeshError

    with pytest.raises(HyperMeshError, match="not signed by the registry"):
        asyncio.run(fetch_anchors(registry.address, registry.identity, m1.identity, caller=None))
