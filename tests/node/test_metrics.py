"""A node's Prometheus metrics count the DNS queries it answered, by transport, type and rcode."""

from __future__ import annotations

import asyncio

import dns.message
from prometheus_client.parser import text_string_to_metric_families

from hypermesh.node.metrics import question_type, response_code
from hypermesh.transport.client import h3_get
from hypermesh.transport.dns_client import doh3_query, doq_query
from tests.harness.node_process import NodeStarter


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_queries_are_counted_by_transport_type_and_rcode(nodes: NodeStarter) -> None:
    node = nodes.start("metered")
    pin = node.identity

    async def ask() -> None:
        for name, rdtype in (("a.test.", "A"), ("b.test.", "A"), ("c.test.", "AAAA")):
            wire = dns.message.make_query(name, rdtype).to_wire()
            await doq_query(node.address, wire, expected_id=pin, identity=None)
        wire = dns.message.make_query("d.test.", "TXT").to_wire()
        await doh3_query(node.address, wire, expected_id=pin, method="POST", identity=None)

    asyncio.run(ask())
    status, headers, body = asyncio.run(
        h3_get(node.address, "/metrics", expected_id=pin, identity=None)
    )
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    samples = _samples(body.decode())

    def queries(transport: str, qtype: str) -> float:
        labels = (("qtype", qtype), ("rcode", "REFUSED"), ("transport", transport))
        return samples.get(("hypermesh_dns_queries_total", labels), 0.0)

    # The node serves no zones yet: every answer is REFUSED.
    assert queries("doq", "A") == 2
    assert queries("doq", "AAAA") == 1
    assert queries("doh", "TXT") == 1
    count = samples[("hypermesh_dns_query_seconds_count", (("transport", "doq"),))]
    assert count == 3
    info = [k for k in samples if k[0] == "hypermesh_node_info"]
    assert info and ("identity", pin) in info[0][1] and ("name", "metered") in info[0][1]


def test_type_and_rcode_are_read_from_the_bytes() -> None:
    query = dns.message.make_query("www.example.", "HTTPS")
    response = dns.message.make_response(query)
    response.set_rcode(3)
    wire = response.to_wire()
    assert question_type(wire) == "HTTPS"
    assert response_code(wire) == "NXDOMAIN"
    assert question_type(b"\0" * 5) == "none"
    assert question_type(wire[:14]) == "other"
