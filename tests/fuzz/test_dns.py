"""Fuzzing the DNS engine: whatever bytes arrive, it answers FORMERR (or drops) and never raises
(``targets.check_dns_message``). The inputs that once troubled it are in
``corpus/dns-message/``."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from .budget import fuzz
from .corpus import run

QUERY = dns.message.make_query("www.hmtest.", "A", want_dnssec=True).to_wire()


@fuzz(300)
@given(st.binary(max_size=600))
def test_random_bytes(wire: bytes) -> None:
    run("dns-message", wire, "random-bytes")


@fuzz(100)
@given(st.integers(min_value=0, max_value=len(QUERY)))
def test_truncated_queries(length: int) -> None:
    run("dns-message", QUERY[:length], "truncated")


@fuzz(60)
@given(st.binary(min_size=1, max_size=70000))
def test_oversized_and_trailing_junk(tail: bytes) -> None:
    run("dns-message", QUERY + tail, "trailing-junk")


@fuzz(300)
@given(st.data())
def test_mutated_queries(data: st.DataObject) -> None:
    wire = bytearray(QUERY)
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        position = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
        wire[position] = data.draw(st.integers(min_value=0, max_value=255))
    run("dns-message", bytes(wire), "mutated")


@fuzz(200)
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
    name: list[bytes], rdtype: int, rdclass: int, dnssec: bool
) -> None:
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
    run("dns-message", query.to_wire(), "well-formed")
