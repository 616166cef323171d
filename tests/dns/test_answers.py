"""The answering engine without sockets: wire bytes in, wire bytes out."""

from __future__ import annotations

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from hypermesh.dns import DnsEngine, StaticZones, answers
from hypermesh.dns.answers import MAX_CACHED
from tests.harness.dns_server import ORIGIN, SignedZone, make_zone


def ask(
    answerer: DnsEngine,
    name: str,
    rdtype: str = "A",
    *,
    dnssec: bool = False,
    **options: object,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=dnssec, **options)  # type: ignore[arg-type]
    wire = answerer.answer(query.to_wire())
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert query.is_response(response)
    return response


def rdata_texts(rrsets: list[dns.rrset.RRset], rdtype: int) -> set[str]:
    return {rdata.to_text() for rrset in rrsets if rrset.rdtype == rdtype for rdata in rrset}


@pytest.fixture
def answerer() -> DnsEngine:
    return DnsEngine(StaticZones([make_zone()]))


@pytest.fixture
def signed(signed_zone: SignedZone) -> DnsEngine:
    return DnsEngine(StaticZones([signed_zone.zone]))


def validate_all(response: dns.message.Message, signed_zone: SignedZone) -> int:
    """Validate every RRset of the answer and authority sections with its RRSIG; the count."""
    checked = 0
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            rrsig = next(
                (
                    s
                    for s in section
                    if s.rdtype == dns.rdatatype.RRSIG
                    and s.covers == rrset.rdtype
                    and s.name == rrset.name
                ),
                None,
            )
            assert rrsig is not None, f"no RRSIG for {rrset.name} {rrset.rdtype!r}"
            dns.dnssec.validate(rrset, rrsig, signed_zone.keys)
            checked += 1
    return checked


# -- positive and negative answers ----------------------------------------------------------


def test_positive_answer_is_authoritative(answerer: DnsEngine) -> None:
    response = ask(answerer, "www.hmtest.", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA and response.flags & dns.flags.QR
    assert rdata_texts(response.answer, dns.rdatatype.A) == {"192.0.2.10"}
    assert response.answer[0].ttl == 300 and response.authority == []


def test_names_are_case_insensitive_and_the_question_is_echoed(answerer: DnsEngine) -> None:
    response = ask(answerer, "WwW.HmTest.", "AAAA")
    assert rdata_texts(response.answer, dns.rdatatype.AAAA) == {"2001:db8::10"}
    assert response.question[0].name.to_text() == "WwW.HmTest."


def test_nxdomain_carries_the_soa_at_the_negative_ttl(answerer: DnsEngine) -> None:
    response = ask(answerer, "nothing.hmtest.", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA and response.answer == []
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name == ORIGIN
    assert soa.ttl == 120  # min(SOA TTL 3600, minimum 120), RFC 2308


def test_nodata_carries_the_soa(answerer: DnsEngine) -> None:
    response = ask(answerer, "www.hmtest.", "MX")
    assert response.rcode() == dns.rcode.NOERROR and response.answer == []
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_an_empty_non_terminal_is_nodata_not_nxdomain(answerer: DnsEngine) -> None:
    response = ask(answerer, "deep.hmtest.", "TXT")
    assert response.rcode() == dns.rcode.NOERROR and response.answer == []
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_cname_is_followed_in_the_answer(answerer: DnsEngine) -> None:
    response = ask(answerer, "alias.hmtest.", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert [(r.name.to_text(), r.rdtype) for r in response.answer] == [
        ("alias.hmtest.", dns.rdatatype.CNAME),
        ("www.hmtest.", dns.rdatatype.A),
    ]
    cname_only = ask(answerer, "alias.hmtest.", "CNAME")
    assert [r.rdtype for r in cname_only.answer] == [dns.rdatatype.CNAME]


def test_cname_loops_and_targets_outside_stop(answerer: DnsEngine) -> None:
    looped = ask(answerer, "loop1.hmtest.", "A")
    assert looped.rcode() == dns.rcode.NOERROR
    assert len(looped.answer) == 2  # loop1 -> loop2 -> (loop1 seen: stop)
    outside = ask(answerer, "outside.hmtest.", "A")
    assert outside.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in outside.answer] == [dns.rdatatype.CNAME]


def test_ns_at_the_apex_with_addresses(answerer: DnsEngine) -> None:
    response = ask(answerer, "hmtest.", "NS")
    assert rdata_texts(response.answer, dns.rdatatype.NS) == {"ns1.hmtest."}
    assert rdata_texts(response.additional, dns.rdatatype.A) == {"192.0.2.1"}
    assert rdata_texts(response.additional, dns.rdatatype.AAAA) == {"2001:db8::1"}


def test_wildcards_synthesise_the_query_name(answerer: DnsEngine) -> None:
    response = ask(answerer, "anything.wild.hmtest.", "TXT")
    assert response.rcode() == dns.rcode.NOERROR
    (txt,) = response.answer
    assert txt.name.to_text() == "anything.wild.hmtest." and txt[0].to_text() == '"wildcard"'
    nodata = ask(answerer, "anything.wild.hmtest.", "A")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []


def test_a_delegation_is_referred_not_answered(answerer: DnsEngine) -> None:
    response = ask(answerer, "host.sub.hmtest.", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.flags & dns.flags.AA and response.answer == []
    assert rdata_texts(response.authority, dns.rdatatype.NS) == {"ns.sub.hmtest."}
    assert rdata_texts(response.additional, dns.rdatatype.A) == {"192.0.2.53"}


def test_names_outside_every_zone_are_refused(answerer: DnsEngine) -> None:
    for name in ("example.com.", "hmtest.example.", "."):
        response = ask(answerer, name, "A")
        assert response.rcode() == dns.rcode.REFUSED
        assert not response.flags & dns.flags.AA
        assert response.answer == response.authority == []


def test_the_closest_enclosing_zone_answers() -> None:
    child = make_zone("@ 300 IN SOA ns hm 1 1 1 1 60\n@ 300 IN NS ns\nwww 300 IN A 198.51.100.7\n")
    child.origin = dns.name.from_text("kid.hmtest.")
    zones = StaticZones([make_zone(), child])
    answerer = DnsEngine(zones)
    assert rdata_texts(ask(answerer, "www.kid.hmtest.").answer, 1) == {"198.51.100.7"}
    assert ask(answerer, "nope.kid.hmtest.").authority[0].name.to_text() == "kid.hmtest."
    assert rdata_texts(ask(answerer, "www.hmtest.").answer, 1) == {"192.0.2.10"}


def test_other_classes_and_transfers_are_refused(answerer: DnsEngine) -> None:
    assert ask(answerer, "www.hmtest.", "A", rdclass="CH").rcode() == dns.rcode.REFUSED
    assert ask(answerer, "hmtest.", "AXFR").rcode() == dns.rcode.REFUSED
    assert ask(answerer, "hmtest.", "MAILB").rcode() == dns.rcode.NOTIMP


def test_any_returns_every_rrset_at_the_name(answerer: DnsEngine) -> None:
    response = ask(answerer, "www.hmtest.", "ANY")
    assert {r.rdtype for r in response.answer} == {
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.TXT,
    }


# -- EDNS and DNSSEC ------------------------------------------------------------------------


def test_edns_is_echoed_within_bounds(answerer: DnsEngine) -> None:
    plain = ask(answerer, "www.hmtest.")
    assert plain.edns == -1 and plain.opt is None  # no EDNS asked, none given
    for asked, echoed in ((1232, 1232), (4096, 4096), (1400, 1400), (65000, 4096), (100, 512)):
        response = ask(answerer, "www.hmtest.", use_edns=0, payload=asked)
        assert response.edns == 0 and response.payload == echoed
        assert not response.ednsflags & dns.flags.DO


def test_edns_padding_is_honoured(answerer: DnsEngine) -> None:
    padding = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * 8)
    query = dns.message.make_query("www.hmtest.", "A", use_edns=0, options=[padding])
    wire = answerer.answer(query.to_wire())
    assert wire is not None and len(wire) % 468 == 0


def test_an_unknown_edns_version_gets_badvers(answerer: DnsEngine) -> None:
    response = ask(answerer, "www.hmtest.", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS and response.answer == []


def test_do_returns_rrsigs_that_validate(signed: DnsEngine, signed_zone: SignedZone) -> None:
    response = ask(signed, "www.hmtest.", "A", dnssec=True)
    assert response.ednsflags & dns.flags.DO
    assert {r.rdtype for r in response.answer} == {dns.rdatatype.A, dns.rdatatype.RRSIG}
    assert validate_all(response, signed_zone) == 1
    chain = ask(signed, "alias.hmtest.", "A", dnssec=True)
    assert validate_all(chain, signed_zone) == 2
    keys = ask(signed, "hmtest.", "DNSKEY", dnssec=True)
    assert validate_all(keys, signed_zone) == 1


def test_without_do_no_dnssec_records(signed: DnsEngine) -> None:
    response = ask(signed, "www.hmtest.", "A", use_edns=0)
    assert {r.rdtype for r in response.answer} == {dns.rdatatype.A}
    negative = ask(signed, "nothing.hmtest.", "A", use_edns=0)
    assert [r.rdtype for r in negative.authority] == [dns.rdatatype.SOA]


def _nsecs(response: dns.message.Message) -> list[dns.rrset.RRset]:
    return [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]


def _covers(nsec: dns.rrset.RRset, name: dns.name.Name) -> bool:
    owner, following = nsec.name, nsec[0].next
    if following == ORIGIN:  # the last NSEC wraps to the apex
        return bool(owner < name)
    return bool(owner < name < following)


def test_nxdomain_with_do_proves_the_name_and_the_wildcard_absent(
    signed: DnsEngine, signed_zone: SignedZone
) -> None:
    qname = dns.name.from_text("nothing.hmtest.")
    response = ask(signed, qname.to_text(), "A", dnssec=True)
    assert response.rcode() == dns.rcode.NXDOMAIN
    nsecs = _nsecs(response)
    assert any(_covers(nsec, qname) for nsec in nsecs)
    assert any(_covers(nsec, dns.name.from_text("*.hmtest.")) for nsec in nsecs)
    assert validate_all(response, signed_zone) == 1 + len(nsecs)  # SOA and each NSEC


def test_nodata_with_do_proves_the_type_absent(signed: DnsEngine, signed_zone: SignedZone) -> None:
    response = ask(signed, "www.hmtest.", "MX", dnssec=True)
    assert response.rcode() == dns.rcode.NOERROR and response.answer == []
    (nsec,) = _nsecs(response)
    assert nsec.name.to_text() == "www.hmtest."
    bitmap_types = {t for window in nsec[0].windows for t in _types(window)}
    assert dns.rdatatype.MX not in bitmap_types and dns.rdatatype.A in bitmap_types
    assert validate_all(response, signed_zone) == 2
    ent = ask(signed, "deep.hmtest.", "A", dnssec=True)
    assert any(_covers(n, dns.name.from_text("deep.hmtest.")) for n in _nsecs(ent))
    assert validate_all(ent, signed_zone) == 2


def test_wildcard_answers_with_do_prove_no_closer_match(
    signed: DnsEngine, signed_zone: SignedZone
) -> None:
    response = ask(signed, "x.wild.hmtest.", "TXT", dnssec=True)
    (rrsig,) = [r for r in response.answer if r.rdtype == dns.rdatatype.RRSIG]
    assert rrsig[0].labels == 2  # the wildcard's labels: a validator sees the expansion
    assert any(_covers(n, dns.name.from_text("x.wild.hmtest.")) for n in _nsecs(response))
    assert validate_all(response, signed_zone) >= 2


def _types(window: tuple[int, bytes]) -> set[int]:
    number, bitmap = window
    return {
        number * 256 + byte * 8 + bit
        for byte, octet in enumerate(bitmap)
        for bit in range(8)
        if octet & (0x80 >> bit)
    }


# -- malformed queries ----------------------------------------------------------------------


def test_short_messages_are_dropped(answerer: DnsEngine) -> None:
    assert answerer.answer(b"") is None
    assert answerer.answer(b"\x12\x34" + b"\0" * 9) is None


def test_garbage_with_a_header_gets_formerr_with_its_id(answerer: DnsEngine) -> None:
    wire = answerer.answer(b"\xab\xcd" + b"\x01\x00" + b"\xff" * 30)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == 0xABCD and response.rcode() == dns.rcode.FORMERR
    assert response.flags & dns.flags.QR and response.flags & dns.flags.RD


def test_two_questions_get_formerr(answerer: DnsEngine) -> None:
    query = dns.message.make_query("www.hmtest.", "A")
    query.question.append(
        dns.rrset.RRset(dns.name.from_text("a.hmtest."), dns.rdataclass.IN, dns.rdatatype.A)
    )
    wire = answerer.answer(query.to_wire())
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.FORMERR
    empty = dns.message.Message(id=7)
    wire = answerer.answer(empty.to_wire())
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.FORMERR


def test_other_opcodes_get_notimp(answerer: DnsEngine) -> None:
    query = dns.message.make_query("www.hmtest.", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    wire = answerer.answer(query.to_wire())
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.rcode() == dns.rcode.NOTIMP and response.opcode() == dns.opcode.NOTIFY
    assert response.id == query.id


def test_responses_are_never_answered(answerer: DnsEngine) -> None:
    query = dns.message.make_query("www.hmtest.", "A")
    query.flags |= dns.flags.QR
    assert answerer.answer(query.to_wire()) is None


# -- the cache ------------------------------------------------------------------------------


def test_cached_answers_carry_each_query_id(answerer: DnsEngine) -> None:
    first = dns.message.make_query("www.hmtest.", "A")
    second = dns.message.make_query("www.hmtest.", "A")
    second.id = (first.id + 1) % 65536
    one, two = answerer.answer(first.to_wire()), answerer.answer(second.to_wire())
    assert one is not None and two is not None
    assert dns.message.from_wire(one).id == first.id
    assert dns.message.from_wire(two).id == second.id
    assert one[2:] == two[2:]  # the same cached bytes
    assert answerer.cache_size() == 2  # one answer under both keys


def test_the_cache_is_dropped_when_the_source_changes() -> None:
    zones = StaticZones([make_zone()])
    answerer = DnsEngine(zones)
    assert ask(answerer, "new.hmtest.", "A").rcode() == dns.rcode.NXDOMAIN
    changed = make_zone(ZONE_PLUS_NEW)
    zones.set(changed)
    response = ask(answerer, "new.hmtest.", "A")
    assert rdata_texts(response.answer, dns.rdatatype.A) == {"203.0.113.5"}
    zones.remove("hmtest.")
    assert ask(answerer, "new.hmtest.", "A").rcode() == dns.rcode.REFUSED
    zones.replace([make_zone()])
    assert ask(answerer, "new.hmtest.", "A").rcode() == dns.rcode.NXDOMAIN


def test_an_edit_in_place_is_seen_after_touch() -> None:
    zone = make_zone()
    zones = StaticZones([zone])
    answerer = DnsEngine(zones)
    assert ask(answerer, "late.hmtest.", "A").rcode() == dns.rcode.NXDOMAIN
    with zone.writer() as txn:
        txn.add("late", 60, dns.rdata.from_text("IN", "A", "203.0.113.9"))
    zones.touch()
    assert rdata_texts(ask(answerer, "late.hmtest.", "A").answer, 1) == {"203.0.113.9"}


def test_the_cache_is_bounded(answerer: DnsEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_CACHED >= 1024
    monkeypatch.setattr(answers, "MAX_CACHED", 40)
    queries = [dns.message.make_query(f"n{number}.hmtest.", "A") for number in range(100)]
    for query in queries:
        answerer.answer(query.to_wire())
    assert answerer.cache_size() == 2 * 40
    wire = answerer.answer(queries[0].to_wire())  # evicted long ago: answered afresh
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.NXDOMAIN


def test_a_zone_made_with_absolute_names_answers_the_same() -> None:
    absolute = dns.zone.from_text(ZONE_TEXT_SMALL, origin=ORIGIN, relativize=False)
    relative = dns.zone.from_text(ZONE_TEXT_SMALL, origin=ORIGIN, relativize=True)
    for zone in (absolute, relative):
        response = ask(DnsEngine(StaticZones([zone])), "alias.hmtest.", "A")
        assert rdata_texts(response.answer, dns.rdatatype.CNAME) == {"www.hmtest."}


ZONE_TEXT_SMALL = """
$TTL 300
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 120
@ IN NS ns1
www IN A 192.0.2.10
alias IN CNAME www
"""

ZONE_PLUS_NEW = ZONE_TEXT_SMALL + "new IN A 203.0.113.5\n"
