"""``check_answer``'s DNSKEY check, without sockets: a zone signed here with dnspython, its
anchors issued by a registry key made here. A DNSKEY set checked once is trusted again within
its RRSIG's window only: a different set, or the same set past its signature's expiry, is
checked (and refused) anew."""

from __future__ import annotations

import dns.dnssec
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dns.dnssectypes import Algorithm, DSDigest

from hypermesh.mirror import verify
from hypermesh.mirror.anchors import Anchors, ZoneAnchor
from hypermesh.mirror.verify import Unverified, check_answer
from hypermesh.transport.identity import Identity

ZONE = dns.name.from_text("acme.")
NOW = 1_800_000_000.0
REGISTRY = Identity.generate()


def _signed(key: Ed25519PrivateKey, rrset: dns.rrset.RRset, dnskey: object, *, days: int = 7):
    return dns.dnssec.sign(
        rrset,
        key,
        ZONE,
        dnskey,  # type: ignore[arg-type]
        inception=NOW - 3600,
        expiration=NOW + days * 86400,
    )


def _zone() -> tuple[Ed25519PrivateKey, dns.rrset.RRset, dns.rrset.RRset]:
    key = Ed25519PrivateKey.generate()
    dnskey = dns.dnssec.make_dnskey(key.public_key(), Algorithm.ED25519, flags=257)
    keys = dns.rrset.from_rdata(ZONE, 3600, dnskey)
    sig = _signed(key, keys, dnskey)
    return key, keys, dns.rrset.from_rdata(ZONE, 3600, sig)


def _answer(key: Ed25519PrivateKey, keys: dns.rrset.RRset) -> dns.message.Message:
    query = dns.message.make_query("www.acme.", "A", want_dnssec=True)
    response = dns.message.make_response(query)
    a = dns.rrset.from_text("www.acme.", 300, "IN", "A", "198.18.0.1")
    response.answer += [a, dns.rrset.from_rdata(a.name, 300, _signed(key, a, keys[0]))]
    return response


def _keys_answer(keys: dns.rrset.RRset, sigs: dns.rrset.RRset) -> dns.message.Message:
    response = dns.message.make_response(dns.message.make_query(ZONE, "DNSKEY"))
    response.answer += [keys, sigs]
    return response


def _anchors(keys: dns.rrset.RRset) -> Anchors:
    ds = dns.dnssec.make_ds(ZONE, keys[0], DSDigest.SHA256).to_text()
    return Anchors.issue(REGISTRY, "acme-net", {"acme.": ZoneAnchor((ds,), 1)}, NOW)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    verify._CHECKED_KEYS.clear()


def test_a_key_set_checked_once_is_not_checked_again_within_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, keys, sigs = _zone()
    anchors, answer = _anchors(keys), _answer(key, keys)
    check_answer(answer, _keys_answer(keys, sigs), anchors, now=NOW)
    made: list[object] = []
    real = dns.dnssec.make_ds
    monkeypatch.setattr(dns.dnssec, "make_ds", lambda *a, **k: made.append(a) or real(*a, **k))
    check_answer(answer, _keys_answer(keys, sigs), anchors, now=NOW + 60)
    assert made == []  # the DS match and the DNSKEY signature were not redone
    # past the RRSIG's expiry the cached check no longer holds: checked again, and refused
    with pytest.raises(Unverified, match="DNSKEY"):
        check_answer(answer, _keys_answer(keys, sigs), anchors, now=NOW + 8 * 86400)
    assert made


def test_another_key_set_is_checked_even_after_a_good_one() -> None:
    key, keys, sigs = _zone()
    anchors = _anchors(keys)
    check_answer(_answer(key, keys), _keys_answer(keys, sigs), anchors, now=NOW)
    # a forger's own key set, self-signed, for the same zone: its DS is not the registry's
    forger, forged_keys, forged_sigs = _zone()
    with pytest.raises(Unverified, match="no DNSKEY matches the DS"):
        check_answer(
            _answer(forger, forged_keys), _keys_answer(forged_keys, forged_sigs), anchors, now=NOW
        )
    # the registry's set with a signature that does not verify (the forger's): refused too
    with pytest.raises(Unverified, match="DNSKEY"):
        check_answer(_answer(key, keys), _keys_answer(keys, forged_sigs), anchors, now=NOW)
