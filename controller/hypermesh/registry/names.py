"""Which TLD names a HyperMesh registry may register.

A HyperMesh TLD must never shadow the DNS everyone else uses: every TLD of the IANA root zone is
refused (the list ships as data, with its source and date, in ``data/root-zone-tlds.txt``), and
so is every special-use name, and a look-alike of any of them or of a TLD already registered
(``look_alike``: equal Unicode TS #39 skeletons). Pure: no I/O beyond reading the package's own
data once.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources

from hypermesh.registry.confusables import skeleton
from hypermesh.registry.errors import PolicyError
from hypermesh.zonedata import ZoneDataError, tld_label, unicode_label

SPECIAL_USE: dict[str, str] = {
    "localhost": "RFC 6761",
    "test": "RFC 6761",
    "example": "RFC 6761",
    "invalid": "RFC 6761",
    "local": "RFC 6762 (multicast DNS)",
    "onion": "RFC 7686 (Tor onion services)",
    "alt": "RFC 9476 (non-DNS namespaces)",
    "arpa": "RFC 3172 (infrastructure; home.arpa is RFC 8375)",
    "internal": "ICANN resolution 2024.07.29.06 (private use)",
    "home": "ICANN board resolution 2018.02.04.12 (never to be delegated)",
    "corp": "ICANN board resolution 2018.02.04.12 (never to be delegated)",
    "mail": "ICANN board resolution 2018.02.04.12 (never to be delegated)",
    "lan": "widely used on private networks (not standardised; refused to avoid collisions)",
    "intranet": "widely used on private networks (not standardised; refused to avoid collisions)",
    "private": "widely used on private networks (not standardised; refused to avoid collisions)",
}
"""Special-use and never-delegated names, with where each is reserved."""


@cache
def root_zone_tlds() -> frozenset[str]:
    """The TLDs of the IANA root zone, as shipped with this release."""
    text = (
        resources.files("hypermesh.registry")
        .joinpath("data", "root-zone-tlds.txt")
        .read_text(encoding="ascii")
    )
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def special_use(name: str) -> str | None:
    """Where ``name`` is reserved as special-use, or None."""
    return SPECIAL_USE.get(name)


def check_label(name: object) -> str:
    """The canonical form of a TLD label (lowercase, an IDN as its A-label: the one rule of
    ``hypermesh.zonedata.tld_label``); ``PolicyError`` saying why ``name`` is not one."""
    try:
        return tld_label(name)
    except ZoneDataError as exc:
        raise PolicyError(str(exc)) from None


def check_tld(name: object, reserved: frozenset[str] = frozenset()) -> str:
    """The canonical form of ``name`` if it may be registered; ``PolicyError`` saying why
    not: not a label, special-use, a TLD of the IANA root zone, reserved, or a look-alike
    (Unicode TS #39 skeleton) of any of those."""
    label = check_label(name)
    where = special_use(label)
    if where is not None:
        raise PolicyError(f"{label!r} is a special-use name ({where})")
    if label in root_zone_tlds():
        raise PolicyError(f"{label!r} is a TLD of the IANA root zone")
    if label in reserved:
        raise PolicyError(f"{label!r} is reserved by this registry")
    twin = _protected_skeletons().get(label_skeleton(label))
    if twin is not None:
        raise PolicyError(f"{_both(label)} looks like {_both(twin)} ({_why(twin)})")
    twin = look_alike(label, reserved)
    if twin is not None:
        raise PolicyError(f"{_both(label)} looks like {_both(twin)}, reserved by this registry")
    return label


def label_skeleton(label: str) -> str:
    """The TS #39 skeleton of a canonical TLD label, taken of its Unicode form."""
    return skeleton(unicode_label(label))


def look_alike(label: str, others: Iterable[str]) -> str | None:
    """The first of ``others`` (canonical labels) that is not ``label`` but whose skeleton is
    ``label``'s: an IDN homograph, or an ASCII one (``goog1e``); None if there is none."""
    mine = label_skeleton(label)
    return next((o for o in others if o != label and label_skeleton(o) == mine), None)


@cache
def _protected_skeletons() -> dict[str, str]:
    """Skeleton → name, of every special-use name and TLD of the IANA root zone."""
    return {label_skeleton(n): n for n in sorted([*SPECIAL_USE, *root_zone_tlds()])}


def _why(name: str) -> str:
    where = special_use(name)
    return f"special-use, {where}" if where is not None else "a TLD of the IANA root zone"


def _both(label: str) -> str:
    """``'xn--…' (ü…)`` for an IDN, ``'acme'`` otherwise."""
    shown = unicode_label(label)
    return f"{label!r} ({shown})" if shown != label else repr(label)
