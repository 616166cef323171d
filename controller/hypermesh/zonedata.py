"""The one rule for a TLD's names and record data.

The registry API, the incremental signer (``registry.zones.update_zone``), the full build
(``registry.zones.build_zone``) and the manifest validator all ask this module whether a TLD
label, an owner name, a record type or a record set is acceptable, and what its canonical
form is, so that what one accepts the others accept too. Canonical means:

- a TLD is one label, lowercase, an internationalised one as its A-label (``xn--…``);
- an owner name is lowercase, relative to its zone (``www``, ``_443._udp.www``, ``*.dev``;
  ``@`` is the apex), letters, digits, hyphens and underscores only: no spaces, escapes or
  control characters, and no name outside the zone;
- a type is dnspython's mnemonic (``A``, ``HTTPS``, ``TYPE65280``);
- a value is what dnspython prints after parsing it as that type (``from_text`` then
  ``to_text``), so zone-file syntax in a value (a second record, ``$INCLUDE``, a comment) can
  never be stored: a value holds no control character and no comment, and parses whole.

Rules across the record sets of one name (``check_owner``): a CNAME stands alone and never
at the apex; the apex SOA and NS and every DNSSEC type are the registry's.

Pure: dnspython and idna, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tokenizer
import idna

from hypermesh.errors import HyperMeshError

__all__ = [
    "APEX",
    "MAX_TTL",
    "MAX_VALUES",
    "MAX_VALUE_LENGTH",
    "RecordSet",
    "ZoneDataError",
    "check_owner",
    "check_zone",
    "owner_name",
    "record_type",
    "tld_label",
]

APEX = "@"
MAX_TTL = 2**31 - 1
"""RFC 2181 §8: a TTL is an unsigned 31-bit number of seconds."""
MAX_VALUES = 100
"""Records in one record set."""
MAX_VALUE_LENGTH = 4096
"""Characters of one record's value in presentation format."""

DNSSEC_TYPES = frozenset(
    {
        dns.rdatatype.DNSKEY,
        dns.rdatatype.RRSIG,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.ZONEMD,
    }
)
"""Types the registry signs and adds itself; an owner never writes them."""

_TLD = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DIGITS = re.compile(r"[0-9]+")
_OWNER_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 controls (newline, NUL, tab …), DEL and C1 controls."""


class ZoneDataError(HyperMeshError):
    """A name or record the rule refuses; ``field`` says which part (``name``, ``values[1]``)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def at(self, prefix: str) -> ZoneDataError:
        """The same error with ``prefix`` before its field (``rrsets[2]`` + ``name``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return ZoneDataError(self.message, field)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _shown(text: object) -> str:
    """A value for an error message: repr, cut short."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def tld_label(name: object) -> str:
    """The canonical form of a TLD label (lowercase; a U-label becomes its A-label); raises
    ``ZoneDataError`` saying why ``name`` is not one."""
    if not isinstance(name, str):
        raise ZoneDataError(f"a TLD is a string, not {_shown(name)}")
    if _CONTROL.search(name) or any(c.isspace() for c in name):
        raise ZoneDataError(f"{_shown(name)} is not a valid TLD: it holds a space or control")
    if name.isascii():
        label = name.lower()
    else:
        try:
            label = idna.encode(name, uts46=True, std3_rules=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ZoneDataError(
                f"{_shown(name)} is not a valid internationalised TLD: {exc}"
            ) from None
    if not _TLD.fullmatch(label):
        raise ZoneDataError(
            f"{_shown(name)} is not a valid TLD: one label of 1 to 63 lowercase letters, digits "
            "and hyphens, starting and ending with a letter or digit"
        )
    if _DIGITS.fullmatch(label):
        raise ZoneDataError(f"{_shown(name)} is not a valid TLD: a TLD cannot be all digits")
    _check_hyphens(name, label)
    return label


def _check_hyphens(shown: str, label: str) -> None:
    """``--`` in the third and fourth places is IDNA's: only a valid, canonical A-label."""
    if label[2:4] != "--":
        return
    if not label.startswith("xn--"):
        raise ZoneDataError(
            f"{_shown(shown)} is not a valid label: '--' in the third and fourth places is "
            "reserved for IDNA (xn--)"
        )
    try:
        again = idna.encode(idna.decode(label)).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ZoneDataError(f"{_shown(shown)} is not a valid IDNA A-label: {exc}") from None
    if again != label:
        raise ZoneDataError(f"{_shown(shown)} is not the canonical A-label (that is {again!r})")


def unicode_label(label: str) -> str:
    """The U-label of a canonical A-label (``xn--bcher-kva`` → ``bücher``); others as given."""
    return idna.decode(label) if label.startswith("xn--") else label


def owner_name(name: object, origin: str) -> str:
    """The canonical owner name of ``name`` in the zone ``origin`` (``acme.``): relative,
    lowercase, ``@`` for the apex. Raises ``ZoneDataError`` saying what is wrong."""
    if not isinstance(name, str):
        raise ZoneDataError(f"an owner name is a string, not {_shown(name)}", "name")
    return _owner_name(name, origin)


@functools.lru_cache(maxsize=4096)
def _owner_name(name: str, origin: str) -> str:
    """``owner_name`` of a string, remembered: a zone asks for its names again and again (each
    Record validated, each record set of a batch, each row of a rebuilt zone), and dnspython's
    name parsing is most of the cost. Errors are raised, not remembered."""
    zone = origin.rstrip(".").lower()
    if name == APEX:
        return APEX
    if not name:
        raise ZoneDataError("an owner name cannot be empty (the apex is '@')", "name")
    if _CONTROL.search(name) or any(c.isspace() for c in name):
        raise ZoneDataError(f"{_shown(name)} holds a space or control character", "name")
    if "\\" in name:
        raise ZoneDataError(f"{_shown(name)}: no escapes in owner names", "name")
    text = name
    if text.endswith("."):  # absolute: must be the zone or inside it
        lowered = text.lower()
        if lowered == f"{zone}.":
            return APEX
        if not lowered.endswith(f".{zone}."):
            raise ZoneDataError(f"{_shown(name)} is outside the zone {zone}.", "name")
        text = text[: -len(zone) - 2]
    labels = text.split(".")
    out: list[str] = []
    for i, label in enumerate(labels):
        out.append(_owner_label(name, label, wildcard_ok=i == 0))
    relative = ".".join(out)
    try:
        dns.name.from_text(relative, _origin(f"{zone}."))
    except dns.exception.DNSException as exc:
        message = f"{_shown(name)} is not a valid name in {zone}.: {exc}"
        raise ZoneDataError(message, "name") from None
    return relative


def _owner_label(name: str, label: str, *, wildcard_ok: bool) -> str:
    if label == "*" and wildcard_ok:
        return label
    if not label.isascii():
        try:
            label = idna.encode(label, uts46=True, std3_rules=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ZoneDataError(f"{_shown(name)} is not a valid name: {exc}", "name") from None
    label = label.lower()
    if not _OWNER_LABEL.fullmatch(label):
        raise ZoneDataError(
            f"{_shown(name)} is not a valid owner name: each label is 1 to 63 letters, digits, "
            "hyphens and underscores, not starting or ending with a hyphen ('*' may be the "
            "first label)",
            "name",
        )
    try:
        _check_hyphens(name, label)
    except ZoneDataError as exc:
        raise exc.at("name") from None
    return label


def record_type(text: object) -> str:
    """The canonical mnemonic of a record type an owner may write (``a`` → ``A``)."""
    if not isinstance(text, str) or not text.isascii() or _CONTROL.search(text):
        raise ZoneDataError(f"{_shown(text)} is not a record type", "type")
    try:
        rdtype = dns.rdatatype.from_text(text)
    except dns.exception.DNSException:
        raise ZoneDataError(f"unknown record type {_shown(text)}", "type") from None
    if rdtype == dns.rdatatype.NONE or dns.rdatatype.is_metatype(rdtype):
        raise ZoneDataError(f"{_shown(text)} is a query type, not a record type", "type")
    if rdtype in DNSSEC_TYPES:
        raise ZoneDataError(
            f"{dns.rdatatype.to_text(rdtype)}: DNSSEC records are the registry's", "type"
        )
    if rdtype == dns.rdatatype.SOA:
        raise ZoneDataError("SOA: the registry manages the apex SOA and NS", "type")
    return dns.rdatatype.to_text(rdtype)


def canonical_value(rdtype: dns.rdatatype.RdataType, value: object, origin: str) -> str:
    """``value`` parsed as ``rdtype`` and printed back (names in it stay as written, relative
    or absolute); raises ``ZoneDataError`` saying why it does not parse."""
    if not isinstance(value, str):
        raise ZoneDataError(f"a value is a string, not {_shown(value)}")
    if not value or len(value) > MAX_VALUE_LENGTH:
        raise ZoneDataError(f"a value has 1 to {MAX_VALUE_LENGTH} characters, not {len(value)}")
    if _CONTROL.search(value):
        raise ZoneDataError(
            f"{_shown(value)} holds a control character (a newline, NUL, tab…): one value is "
            "one record, written on one line"
        )
    try:
        if ";" in value:  # a comment starts with one, unless it is quoted
            tokens = dns.tokenizer.Tokenizer(value)
            while not (token := tokens.get(want_comment=True)).is_eol_or_eof():
                if token.is_comment():
                    raise ZoneDataError(f"{_shown(value)} holds a zone-file comment (';')")
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, None)
        if rdtype not in NAMELESS_TYPES:  # its relative names must fit under the origin too
            dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, _origin(origin))
    except dns.exception.DNSException as exc:
        kind = dns.rdatatype.to_text(rdtype)
        raise ZoneDataError(f"{_shown(value)} is not a valid {kind} value: {exc}") from None
    return str(rdata.to_text())


NAMELESS_TYPES = frozenset(
    {
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.TXT,
        dns.rdatatype.SPF,
        dns.rdatatype.CAA,
        dns.rdatatype.TLSA,
        dns.rdatatype.SMIMEA,
        dns.rdatatype.SSHFP,
        dns.rdatatype.OPENPGPKEY,
    }
)
"""Types whose data holds no domain name: parsed under an origin they read the same."""


@functools.lru_cache(maxsize=256)
def _origin(origin: str) -> dns.name.Name:
    return dns.name.from_text(origin)


@dataclass(frozen=True, slots=True)
class RecordSet:
    """Records of one owner name and type: ``name`` relative to the TLD ("@" is the apex),
    ``values`` in zone-file presentation format. ``canonical`` checks one against the rule
    and gives its canonical form."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "values": list(self.values)}

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)

    def canonical(self, origin: str) -> RecordSet:
        """This record set in canonical form for the zone ``origin`` (``acme.``); raises
        ``ZoneDataError`` naming the field that is wrong."""
        name = owner_name(self.name, origin)
        kind = record_type(self.type)
        rdtype = dns.rdatatype.from_text(kind)
        if name == APEX and rdtype == dns.rdatatype.NS:
            raise ZoneDataError("@ NS: the registry manages the apex SOA and NS", "type")
        if name == APEX and rdtype == dns.rdatatype.CNAME:
            raise ZoneDataError("the apex cannot hold a CNAME (it holds the SOA and NS)", "type")
        ttl = self.ttl
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_TTL:
            raise ZoneDataError(f"ttl {_shown(ttl)} is not whole seconds 0 to {MAX_TTL}", "ttl")
        values = self.values
        if not isinstance(values, tuple | list) or not 1 <= len(values) <= MAX_VALUES:
            count = len(values) if isinstance(values, tuple | list) else _shown(values)
            raise ZoneDataError(f"a record set has 1 to {MAX_VALUES} values, not {count}", "values")
        out: list[str] = []
        for i, value in enumerate(values):
            try:
                text = canonical_value(rdtype, value, origin)
            except ZoneDataError as exc:
                raise exc.at(f"values[{i}]") from None
            if text in out:
                raise ZoneDataError(f"{_shown(value)} is given twice", f"values[{i}]")
            out.append(text)
        if len(out) > 1 and dns.rdatatype.is_singleton(rdtype):
            raise ZoneDataError(f"a {kind} record set holds exactly one value", "values")
        return RecordSet(name, kind, ttl, tuple(out))

    def rdataset(self, origin: dns.name.Name) -> dns.rdataset.Rdataset:
        """The parsed records of a canonical record set."""
        rdtype = dns.rdatatype.from_text(self.type)
        rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype, ttl=self.ttl)
        for value in self.values:
            rdataset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin))
        return rdataset


def check_owner(name: str, types: Iterable[str]) -> None:
    """The rules across the record sets of one (canonical) owner name: ``types`` are the
    types it holds, owner's and registry's alike."""
    present = set(types)
    if "CNAME" in present:
        if name == APEX:
            raise ZoneDataError("the apex cannot hold a CNAME (it holds the SOA and NS)", "type")
        others = sorted(present - {"CNAME", "RRSIG", "NSEC"})
        if others:
            raise ZoneDataError(
                f"{name} CNAME: a CNAME stands alone at its name (RFC 1034 §3.6.2), and {name} "
                f"also holds {', '.join(others)}",
                "type",
            )


def check_zone(origin: str, rrsets: Iterable[RecordSet]) -> list[RecordSet]:
    """Every record set of a zone in canonical form, checked one by one and name by name;
    raises ``ZoneDataError`` (its field names the record set by name and type)."""
    out: dict[tuple[str, str], RecordSet] = {}
    for rrset in rrsets:
        try:
            checked = rrset.canonical(origin)
        except ZoneDataError as exc:
            where = f"record set {_shown(rrset.name)} {_shown(rrset.type)}"
            raise ZoneDataError(f"{where}: {exc}") from None
        if checked.key in out:
            raise ZoneDataError(
                f"{checked.name} {checked.type} is given twice (as {_shown(rrset.name)})"
            )
        out[checked.key] = checked
    by_name: dict[str, set[str]] = {}
    for name, kind in out:
        by_name.setdefault(name, set()).add(kind)
    for name, types in by_name.items():
        check_owner(name, types | ({"SOA", "NS"} if name == APEX else set()))
    return list(out.values())
