"""Property tests: whatever bytes arrive, the engine answers FORMERR (or drops) and never raises."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypermesh.dns import Answerer, StaticZones

from .conftest import SignedZone, make_zone

ANSWERER = Answerer(StaticZones([make_zone()]))
QUERY = dns.message.make_query("www.hmtest.", "A", want_dnssec=True).to_wire()


def check(wire: bytes, answerer: Answerer = ANSWERER) -> None:
    """The contract: None only below 12 bytes or for a response; else a parseable answer
    with the query's ID."""
    answer = answerer.answer(wire)
    if answer is None:
        assert len(wire) < 12 or wire[2] & 0x80
        return
    assert answer[:2] == wire[:2]
    response = dns.message.from_wire(answer)
    assert response.rcode() in {
        dns.rcode.NOERROR,
        dns.rcode.NXDOMAIN,
        dns.rcode.FORMERR,
        dns.rcode.REFUSED,
        dns.rcode.NOTIMP,
        dns.rcode.BADVERS,
    }


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(wire: bytes) -> None:
    check(wire)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(QUERY)))
def test_truncated_queries(length: int) -> None:
    check(QUERY[:length])


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=70000))
def test_oversized_and_trailing_junk(tail: bytes) -> None:
    check(QUERY + tail)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_queries(data: st.DataObject) -> None:
    wire = bytearray(QUERY)
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        position = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
        wire[position] = data.draw(st.integers(min_value=0, max_value=255))
    check(bytes(wire))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.lists(
        st.binary(min_size=1, max_size=20).filter(lambda label: b"." not in label),
        max_size=4,
    ),
    rdtype=st.integers(min_value=0, max_value=65535),
    rdclass=st.sampled_from([1, 3, 255, 254, 42]),
    dnssec=st.booleans(),
)
def test_well_formed_queries_for_anything(
    signed_zone: SignedZone, name: list[bytes], rdtype: int, rdclass: int, dnssec: bool
) -> None:
    answerer = Answerer(StaticZones([signed_zone.zone]))
    labels = [*name, b"hmtest", b""]
    try:
        qname = dns.name.Name(labels)
    except dns.name.NameTooLong:
        return
    query = dns.message.make_query(
        qname,
        dns.rdatatype.RdataType.make(rdtype),
        dns.rdataclass.RdataClass.make(rdclass),
        want_dnssec=dnssec,
    )
    check(query.to_wire(), answerer)


@pytest.mark.parametrize(
    "wire",
    [
        b"\0" * 12,
        b"\xff" * 12,
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # one question, none present
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # ptr loop
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x01",  # OPT missing
    ],
)
def test_known_troublemakers(wire: bytes) -> None:
    check(wire)
