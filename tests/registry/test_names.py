"""Which TLDs a registry refuses: IANA's, special-use ones, reserved ones, invalid labels."""

from __future__ import annotations

import pytest

from hypermesh.registry import PolicyError, check_tld, root_zone_tlds


@pytest.mark.parametrize("name", ["com", "org", "uk", "de", "xn--p1ai", "google", "online"])
def test_iana_tlds_are_refused(name: str) -> None:
    with pytest.raises(PolicyError, match="TLD of the IANA root zone"):
        check_tld(name)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("localhost", "RFC 6761"),
        ("test", "RFC 6761"),
        ("example", "RFC 6761"),
        ("invalid", "RFC 6761"),
        ("local", "RFC 6762"),
        ("onion", "RFC 7686"),
        ("alt", "RFC 9476"),
        ("arpa", "RFC 3172"),
        ("internal", "ICANN"),
        ("home", "ICANN"),
    ],
)
def test_special_use_names_are_refused_with_their_source(name: str, where: str) -> None:
    with pytest.raises(PolicyError, match=f"special-use name \\({where}"):
        check_tld(name)


@pytest.mark.parametrize(
    "name", ["", "-acme", "acme-", "ac_me", "a.b", "x" * 64, "123", "ab--cd", "xn--zz"]
)
def test_invalid_labels_are_refused(name: str) -> None:
    with pytest.raises(PolicyError, match="not a valid"):
        check_tld(name)


@pytest.mark.parametrize("name", ["acme", "hypermesh-demo", "mesh", "q7", "x" * 63])
def test_private_tlds_are_accepted(name: str) -> None:
    assert check_tld(name) == name


def test_a_tld_is_canonical_lowercase_and_an_idn_its_a_label() -> None:
    assert check_tld("Acme") == "acme"
    assert check_tld("bücher-mesh") == check_tld("xn--bcher-mesh-9db") == "xn--bcher-mesh-9db"


def test_reserved_by_the_registry() -> None:
    with pytest.raises(PolicyError, match="reserved by this registry"):
        check_tld("acme", reserved=frozenset({"acme"}))


def test_the_shipped_list_is_the_root_zone() -> None:
    tlds = root_zone_tlds()
    assert 1400 < len(tlds) < 1600
    assert {"com", "net", "org", "arpa", "xn--p1ai"} <= tlds
    assert all(t == t.lower() and "." not in t for t in tlds)
