"""Which TLD names a HyperMesh registry may register.

A HyperMesh TLD must never shadow the DNS everyone else uses: every TLD of the IANA root zone is
refused (the list ships as data, with its source and date, in ``data/root-zone-tlds.txt``), and
so is every special-use name. Pure: no I/O beyond reading the package's own data once.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from hypermesh.registry.errors import PolicyError

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

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


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


def check_label(name: str) -> None:
    """Raise ``PolicyError`` unless ``name`` is a well-formed TLD label (LDH, IDNA rules)."""
    if not isinstance(name, str) or not _LABEL.match(name):
        raise PolicyError(
            f"{name!r} is not a valid TLD: one label of 1 to 63 lowercase letters, digits "
            "and hyphens, starting and ending with a letter or digit"
        )
    if name.isdigit():
        raise PolicyError(f"{name!r} is not a valid TLD: a TLD cannot be all digits")
    if name[2:4] == "--" and not name.startswith("xn--"):
        raise PolicyError(
            f"{name!r} is not a valid TLD: '--' in the third and fourth places "
            "is reserved for IDNA (xn--)"
        )
    if name.startswith("xn--"):
        try:
            name.encode("ascii").decode("idna")
        except UnicodeError as exc:
            raise PolicyError(f"{name!r} is not a valid IDNA A-label: {exc}") from exc


def check_tld(name: str, reserved: frozenset[str] = frozenset()) -> None:
    """Raise ``PolicyError`` saying why ``name`` cannot be registered; return if it can."""
    check_label(name)
    where = special_use(name)
    if where is not None:
        raise PolicyError(f"{name!r} is a special-use name ({where})")
    if name in root_zone_tlds():
        raise PolicyError(f"{name!r} is a TLD of the IANA root zone")
    if name in reserved:
        raise PolicyError(f"{name!r} is reserved by this registry")
