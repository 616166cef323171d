"""A Record's target expands to HTTPS, A/AAAA and TLSA record sets that dnspython accepts."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from hypermesh.drivers.targets import owner_name, spki_hex, target_rrsets
from hypermesh.transport.identity import Identity


def test_owner_names() -> None:
    assert owner_name("www.acme", {"tld": "acme"}) == "www"
    assert owner_name("acme", {"tld": "acme"}) == "@"
    assert owner_name("x.acme", {"tld": "acme", "name": "_sip._tcp"}) == "_sip._tcp"


def test_ipv4_target_expands_to_valid_records() -> None:
    identity = Identity.generate()
    sets = target_rrsets("www", 300, "127.0.0.1:4433", identity.node_id)
    assert [(s.name, s.type) for s in sets] == [
        ("www", "HTTPS"),
        ("www", "A"),
        ("_4433._udp.www", "TLSA"),
    ]
    origin = dns.name.from_text("acme.")
    for rrset in sets:
        for value in rrset.values:
            rdata = dns.rdata.from_text(
                dns.rdataclass.IN, dns.rdatatype.from_text(rrset.type), value, origin
            )
            assert rdata.to_text()
    https = sets[0].values[0]
    assert 'alpn="h3"' in https and "port=4433" in https and "ipv4hint=127.0.0.1" in https
    # The TLSA data is the key's SPKI: 12 bytes of DER header and the 32-byte raw key.
    assert sets[2].values[0] == f"3 1 0 {spki_hex(identity.node_id)}"
    assert spki_hex(identity.node_id).endswith(identity.public_key_bytes.hex())


def test_ipv6_target_at_the_apex() -> None:
    identity = Identity.generate()
    sets = target_rrsets("@", 60, "[::1]:853", identity.node_id)
    assert [(s.name, s.type) for s in sets] == [
        ("@", "HTTPS"),
        ("@", "AAAA"),
        ("_853._udp", "TLSA"),
    ]
    assert "ipv6hint=::1" in sets[0].values[0]
