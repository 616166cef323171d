"""The stub's pure core, without sockets: parsing and the answers made at once, routing,
verified and bogus answers from a signed zone and anchors made here, truncation, the cache's
TTLs counted down by the clock it is given."""

from __future__ import annotations

import time

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from dns.dnssectypes import DSDigest

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.source import StaticZones
from hypermesh.mirror.anchors import Anchors, ZoneAnchor
from hypermesh.resolver import core
from hypermesh.resolver.core import AnswerCache, Outcome, Query, Reply, Route
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import ORIGIN, make_zone, sign

SIGNED = sign(make_zone())
ENGINE = DnsEngine(StaticZones([SIGNED.zone]))
KEYS = SIGNED.keys[ORIGIN]
ANCHORS = Anchors.issue(
    Identity.generate(),
    "acme",
    {
        "hmtest.": ZoneAnchor(
            tuple(dns.dnssec.make_ds(ORIGIN, k, DSDigest.SHA256).to_text() for k in KEYS), 1
        )
    },
    time.time(),
)


def parsed(message: dns.message.Message) -> Query:
    found = core.parse(message.to_wire())
    assert isinstance(found, Query)
    return found


def node_answer(question: dns.message.Message) -> dns.message.Message:
    wire = ENGINE.answer(question.to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def test_what_is_answered_at_once() -> None:
    assert core.parse(b"\x00" * 5) is None
    response = dns.message.make_response(dns.message.make_query("a.", "A"))
    assert core.parse(response.to_wire()) is None  # never answer an answer
    bad = core.parse(b"\xab\xcd\x01\x00\x00\x01" + b"\xff" * 10)
    assert isinstance(bad, Reply) and bad.wire[:2] == b"\xab\xcd"
    assert bad.wire[3] & 0x0F == dns.rcode.FORMERR and bad.outcome is Outcome.MALFORMED
    axfr = core.parse(dns.message.make_query("hmtest.", "AXFR").to_wire())
    assert isinstance(axfr, Reply) and axfr.message is not None
    assert axfr.message.rcode() == dns.rcode.REFUSED
    future = core.parse(dns.message.make_query("a.", "A", use_edns=1).to_wire())
    assert isinstance(future, Reply) and future.message is not None
    assert future.message.rcode() == dns.rcode.BADVERS
    notify = dns.message.make_query("a.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert isinstance(core.parse(notify.to_wire()), Reply)


def test_routes_and_limits() -> None:
    plain = parsed(dns.message.make_query("www.hmtest.", "A"))
    assert plain.udp_limit() == 512 and not plain.edns
    roomy = parsed(dns.message.make_query("x.example.", "A", use_edns=0, payload=4096))
    assert roomy.udp_limit() == core.UDP_PAYLOAD
    assert core.route(plain, ANCHORS.zones, forward=True) is Route.MESH
    assert core.route(roomy, ANCHORS.zones, forward=True) is Route.FORWARD
    assert core.route(roomy, ANCHORS.zones, forward=False) is Route.REFUSE
    assert core.zone_of(dns.name.from_text("a.b.hmtest."), ["hmtest.", "b.hmtest."]) == (
        dns.name.from_text("b.hmtest.")
    )


def test_a_verified_answer_has_ad_and_a_forged_one_is_bogus() -> None:
    message = dns.message.make_query("www.hmtest.", "A", use_edns=0)
    message.flags |= dns.flags.AD
    query = parsed(message)
    keys = node_answer(core.keys_question(ORIGIN))
    answer = node_answer(core.mesh_question(query))
    reply = core.verified_reply(query, answer, keys, ANCHORS, time.time())
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AD
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.A]  # no RRSIG without DO
    assert reply.id == message.id and not reply.flags & dns.flags.AA

    forged = dns.message.from_wire(answer.to_wire())
    a = next(r for r in forged.answer if r.rdtype == dns.rdatatype.A)
    forged.answer[forged.answer.index(a)] = dns.rrset.from_text(
        a.name, a.ttl, "IN", "A", "203.0.113.9"
    )
    bogus = core.verified_reply(query, forged, keys, ANCHORS, time.time())
    assert bogus.rcode() == dns.rcode.SERVFAIL and not bogus.answer
    assert [o.code for o in bogus.options] == [dns.edns.EDECode.DNSSEC_BOGUS]

    other = Anchors.issue(
        Identity.generate(), "acme", {"hmtest.": ZoneAnchor(("1 15 2 00",), 1)}, 0
    )
    wrong_key = core.verified_reply(query, answer, keys, other, time.time())
    assert wrong_key.rcode() == dns.rcode.SERVFAIL
    expired = core.verified_reply(query, answer, keys, ANCHORS, time.time() + 10 * 86400)
    assert expired.rcode() == dns.rcode.SERVFAIL


def test_a_large_answer_is_truncated_to_what_the_client_takes() -> None:
    query = parsed(dns.message.make_query("www.hmtest.", "A"))
    reply = core.forwarded_reply(query, dns.message.make_response(query.message))
    for n in range(60):
        reply.answer.append(dns.rrset.from_text("www.hmtest.", 60, "IN", "A", f"192.0.2.{n}"))
    wire, truncated = core.fit(reply, query.udp_limit())
    assert truncated and len(wire) <= 512
    cut = dns.message.from_wire(wire)
    assert cut.flags & dns.flags.TC and not cut.answer and cut.question == query.message.question
    whole, truncated = core.fit(reply, core.MAX_MESSAGE)
    assert not truncated and len(dns.message.from_wire(whole).answer[0]) == 60


def test_the_cache_counts_ttls_down_and_forgets() -> None:
    query = parsed(dns.message.make_query("x.example.", "A"))
    upstream = dns.message.make_response(query.message)
    upstream.answer.append(dns.rrset.from_text("x.example.", 30, "IN", "A", "192.0.2.7"))
    reply = core.forwarded_reply(query, upstream)
    cache = AnswerCache(max_entries=2)
    cache.put(query, reply, Outcome.FORWARDED, now=100.0)
    again = parsed(dns.message.make_query("x.example.", "A"))
    hit = cache.get(again, now=110.5)
    assert hit is not None and hit[0].answer[0].ttl == 20 and hit[0].id == again.message.id
    assert hit[1] is Outcome.FORWARDED
    assert cache.get(again, now=130.0) is None and len(cache) == 0
    servfail = core.failure(query, dns.edns.EDECode.NO_REACHABLE_AUTHORITY, "down")
    cache.put(query, servfail, Outcome.UNREACHABLE, now=0.0)
    assert len(cache) == 0  # failures are never kept
