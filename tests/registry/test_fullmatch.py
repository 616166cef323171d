"""Every checker of a name, label, key, ID or number takes the whole text: a good value with a
trailing newline, carriage return or NUL, or written with look-alike digits, is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hypermesh.nexus.modules import COMMIT
from hypermesh.nexus.values import DURATION
from hypermesh.policy import parse_duration
from hypermesh.registry.errors import AuthError, PolicyError
from hypermesh.registry.names import check_tld
from hypermesh.registry.signing import MemoryNonceCache, sign_request, verify_request
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import Identity, is_node_id
from hypermesh.zonedata import ZoneDataError, owner_name, record_type, tld_label

KEY = Identity.generate()
NOW = 1_800_000_000


def refuses(check: Callable[[str], object], text: str) -> bool:
    try:
        result = check(text)
    except (ValueError, ZoneDataError, PolicyError, AuthError):
        return True
    return result is False or result is None


def timestamp_check(value: str) -> bool:
    headers = sign_request(KEY, "POST", "/x", b"", now=NOW)
    headers = {**headers, "hm-timestamp": value}
    verify_request("POST", "/x", b"", headers, now=NOW, seen=MemoryNonceCache())
    return True


def nonce_check(value: str) -> bool:
    headers = sign_request(KEY, "POST", "/x", b"", now=NOW, nonce=value)
    verify_request("POST", "/x", b"", headers, now=NOW, seen=MemoryNonceCache())
    return True


CHECKERS: dict[str, tuple[Callable[[str], object], str]] = {
    "TLD label": (tld_label, "acme7"),
    "TLD policy": (check_tld, "acme7"),
    "owner name": (lambda t: owner_name(t, "acme."), "www7"),
    "record type": (record_type, "TYPE65280"),
    "node ID": (lambda t: is_node_id(t) or None, KEY.node_id),
    "hm-timestamp": (timestamp_check, str(NOW)),
    "hm-nonce": (nonce_check, "abcdefghijklmnop0123"),
    "Nexus commit": (COMMIT.fullmatch, "0123456789abcdef0123456789abcdef01234567"),
    "Nexus duration": (DURATION.fullmatch, "1h30m"),
    "policy duration": (parse_duration, "90s"),
    "host:port": (parse_address, "127.0.0.1:8053"),
}
TRIMS = {"policy duration"}
"""Command-line values, stripped of surrounding whitespace before they are checked."""
SUFFIXES = ["\n", "\r", "\x00", "\r\n", " x"]
DIGITS = {
    "Arabic-Indic": "".join(chr(0x660 + d) for d in range(10)),
    "fullwidth": "".join(chr(0xFF10 + d) for d in range(10)),
    "superscript": "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",
}


@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_the_good_value_passes(checker: str) -> None:
    check, good = CHECKERS[checker]
    assert not refuses(check, good)


@pytest.mark.parametrize("suffix", SUFFIXES, ids=repr)
@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_a_trailing_control_character_is_refused(checker: str, suffix: str) -> None:
    check, good = CHECKERS[checker]
    if checker in TRIMS and not suffix.strip():
        assert check(good + suffix) == check(good)  # trimmed on purpose, not half-matched
    else:
        assert refuses(check, good + suffix)


@pytest.mark.parametrize("digits", sorted(DIGITS))
@pytest.mark.parametrize("checker", sorted(c for c in CHECKERS if any(ch.isdigit() for ch in
                                                                   CHECKERS[c][1])))  # fmt: skip
def test_look_alike_digits_are_refused(checker: str, digits: str) -> None:
    check, good = CHECKERS[checker]
    table = str.maketrans("0123456789", DIGITS[digits])
    spelled = good.translate(table)
    if checker in ("TLD label", "owner name") and not refuses(check, spelled):
        # IDNA (UTS 46) maps fullwidth and superscript digits to ASCII: the name is taken
        # in its one canonical spelling, the ASCII one, never kept as written.
        assert check(spelled) == check(good)
        return
    if checker == "TLD policy" and not refuses(check, spelled):
        assert tld_label(spelled) == tld_label(good)  # checked in the canonical spelling
        return
    assert refuses(check, spelled)
