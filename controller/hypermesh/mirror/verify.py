"""A client that verifies: an answer from any node is checked from the network's registry key
down, so a mirror that alters or invents a record is caught.

The chain: the registry's signed anchors (its node ID, which the client knows, signs the DS of
every zone) → the zone's DNSKEY RRset (a key matches the DS and signs the set) → every RRset of
the answer and authority sections (each signed by that DNSKEY) → for NXDOMAIN and NODATA, the
NSEC record that proves the name or the type absent. Anything missing or failing raises
``Unverified`` naming what.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from dns.dnssectypes import DSDigest

from hypermesh.errors import HyperMeshError
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.follower import API
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.identity import Identity

Ask = Callable[[dns.message.Message], Awaitable[dns.message.Message]]
"""Send a query to the node being checked and return its answer."""


class Unverified(HyperMeshError):
    """An answer that does not check out against the registry's key."""


async def fetch_anchors(
    address: str, identity: str | None, registry: str, *, caller: Identity | None
) -> Anchors:
    """The anchors a node holds (the registry's, or relayed by a mirror), checked against the
    registry's node ID; asked proving ``caller``'s key (``None``: anonymous)."""
    return Anchors.verify(
        await h3_get_json(address, f"{API}/anchors", expected_id=identity, identity=caller),
        registry,
    )


@dataclass(frozen=True, slots=True)
class Checked:
    """An answer and what its check found."""

    response: dns.message.Message
    zone: str | None
    """The zone the answer was checked in (None: no zone of the network holds the name)."""
    failure: str | None
    """Why the answer does not check out; None when it does."""


async def verified_query(ask: Ask, query: dns.message.Message, anchors: Anchors) -> Checked:
    """Ask ``query`` with the DO bit, then the zone's DNSKEY, and check the answer from the
    registry's anchors down (``check_answer``). A failed check is reported, not raised, so the
    caller can still show what the node answered."""
    query.want_dnssec(True)
    response = await ask(query)
    name = (response.question or query.question)[0].name
    try:
        zone = _zone_of(name, anchors)
    except Unverified as exc:
        return Checked(response, None, str(exc))
    keys = await ask(dns.message.make_query(zone, dns.rdatatype.DNSKEY, want_dnssec=True))
    try:
        check_answer(response, keys, anchors)
    except Unverified as exc:
        return Checked(response, zone.to_text(), str(exc))
    return Checked(response, zone.to_text(), None)


def check_answer(
    response: dns.message.Message,
    keys_response: dns.message.Message,
    anchors: Anchors,
    *,
    now: float | None = None,
) -> None:
    """Check ``response`` with the zone keys in ``keys_response`` (an answer to DNSKEY at the
    zone's apex) against ``anchors``; ``Unverified`` when anything fails."""
    when = time.time() if now is None else now
    question = response.question[0] if response.question else None
    if question is None:
        raise Unverified("the answer has no question")
    zone = _zone_of(question.name, anchors)
    dnskeys = _find(keys_response.answer, zone, dns.rdatatype.DNSKEY)
    if dnskeys is None:
        raise Unverified(f"{zone}: no DNSKEY in the answer")
    _check_keys(zone, dnskeys, keys_response.answer, anchors, when)
    keyring = {zone: dnskeys}
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise Unverified(f"the answer is {dns.rcode.to_text(rcode)}: nothing to verify")
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype != dns.rdatatype.RRSIG:
                if not rrset.name.is_subdomain(zone):
                    raise Unverified(f"{rrset.name} is outside {zone}: not checked here")
                _validate(section, rrset, keyring, when)
    nsecs = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]
    if rcode == dns.rcode.NXDOMAIN:
        if not any(_covers(n, question.name) for n in nsecs):
            raise Unverified(f"{question.name}: NXDOMAIN without an NSEC that proves it")
    elif not any(
        r.name == question.name and r.rdtype in (question.rdtype, dns.rdatatype.CNAME)
        for r in response.answer
    ):
        proven = any(n.name == question.name and not _has_type(n, question.rdtype) for n in nsecs)
        if not proven:
            raise Unverified(f"{question.name}: no answer and no NSEC that proves none exists")


_CHECKED_KEYS: dict[tuple[str, frozenset[str], bytes], tuple[float, float]] = {}
"""DNSKEY sets already checked, by (zone, the DS the registry signed, the set and its RRSIG as
wire bytes) → the window (inception, expiration) their RRSIG holds for. A stub or mirror asks
the same zone's keys for every answer: this checks each set once, not per answer."""
MAX_CHECKED_KEYS = 256


def _check_keys(
    zone: dns.name.Name,
    dnskeys: dns.rrset.RRset,
    section: list[dns.rrset.RRset],
    anchors: Anchors,
    when: float,
) -> None:
    """``dnskeys`` match the registry's DS for ``zone`` and are signed by one of themselves
    (``Unverified`` otherwise); a set checked before is trusted within its RRSIG's window."""
    ds = anchors.zones[zone.to_text()].ds
    sigs = _find_sigs(section, dnskeys)
    key = None
    if sigs is not None:
        parts = [r.to_digestable(dns.name.root) for r in (*dnskeys, *sigs)]
        wire = len(dnskeys).to_bytes(2, "big") + b"".join(
            len(part).to_bytes(2, "big") + part for part in parts
        )
        key = (zone.to_text(), frozenset(ds), wire)
        window = _CHECKED_KEYS.get(key)
        if window is not None and window[0] <= when <= window[1]:
            return
    if not {dns.dnssec.make_ds(zone, k, DSDigest.SHA256).to_text() for k in dnskeys} & set(ds):
        raise Unverified(f"{zone}: no DNSKEY matches the DS the registry signed")
    _validate(section, dnskeys, {zone: dnskeys}, when)
    if key is not None and sigs is not None:
        if len(_CHECKED_KEYS) >= MAX_CHECKED_KEYS:
            _CHECKED_KEYS.pop(next(iter(_CHECKED_KEYS)))
        inception = max(float(sig.inception) for sig in sigs)
        expiration = min(float(sig.expiration) for sig in sigs)
        _CHECKED_KEYS[key] = (inception, expiration)


def _find_sigs(section: list[dns.rrset.RRset], rrset: dns.rrset.RRset) -> dns.rrset.RRset | None:
    return next(
        (
            r
            for r in section
            if r.rdtype == dns.rdatatype.RRSIG and r.name == rrset.name and r.covers == rrset.rdtype
        ),
        None,
    )


def _zone_of(name: dns.name.Name, anchors: Anchors) -> dns.name.Name:
    candidates = [
        dns.name.from_text(zone)
        for zone in anchors.zones
        if name.is_subdomain(dns.name.from_text(zone))
    ]
    if not candidates:
        raise Unverified(f"{name}: no zone of this network holds it")
    return max(candidates, key=len)


def _find(
    section: list[dns.rrset.RRset], name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    return next((r for r in section if r.name == name and r.rdtype == rdtype), None)


def _validate(
    section: list[dns.rrset.RRset],
    rrset: dns.rrset.RRset,
    keyring: dict[dns.name.Name, dns.rrset.RRset],
    now: float,
) -> None:
    sigs = _find_sigs(section, rrset)
    what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
    if sigs is None:
        raise Unverified(f"{what}: not signed")
    try:
        dns.dnssec.validate(rrset, sigs, keyring, now=now)  # type: ignore[arg-type]
    except dns.exception.ValidationFailure as exc:
        raise Unverified(f"{what}: {exc}") from None


def _covers(nsec: dns.rrset.RRset, name: dns.name.Name) -> bool:
    """The NSEC's span (owner, next) holds ``name`` (the last NSEC wraps to the apex)."""
    owner: dns.name.Name = nsec.name
    following: dns.name.Name = nsec[0].next
    if owner < following:
        return bool(owner < name < following)
    return bool(name > owner or name < following)


def _has_type(nsec: dns.rrset.RRset, rdtype: dns.rdatatype.RdataType) -> bool:
    """The NSEC's type bitmap (RFC 4034 §4.1.2) lists ``rdtype``."""
    window, low = divmod(int(rdtype), 256)
    for number, bitmap in nsec[0].windows:
        if number == window:
            octet, bit = divmod(low, 8)
            return octet < len(bitmap) and bool(bitmap[octet] & (0x80 >> bit))
    return False
