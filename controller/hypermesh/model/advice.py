"""Warnings: manifests that validate but rarely say what their author meant. They are printed
(``FILE:LINE:COL: Kind/name: path: warning: …``) by ``validate``, ``plan``, ``diff`` and
``apply``, and never stop them.

- A TXT value with whitespace outside quotes: zone-file presentation, which a Record's values
  use, splits it into several character-strings (``v=spf1 include:x ~all`` becomes three), and
  SPF, DKIM and most readers of TXT records expect one.
"""

from __future__ import annotations

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.txtbase

from hypermesh.errors import Problem
from hypermesh.model.loader import dotted
from hypermesh.model.resources import DesiredState, Resource


def warnings(desired: DesiredState) -> list[Problem]:
    """Every warning about ``desired``, in the order the resources were declared."""
    found: list[Problem] = []
    for resource in desired:
        if resource.kind == "Record":
            found += _split_txt(resource)
    return found


def _split_txt(resource: Resource) -> list[Problem]:
    spec = resource.spec
    if str(spec.get("type", "")).upper() != "TXT":
        return []
    found = []
    for index, value in enumerate(spec.get("values") or ()):
        if not isinstance(value, str) or '"' in value:
            continue  # quoted by its author: the strings are as written
        strings = _strings(value)
        if len(strings) > 1:
            shown = " ".join(f'"{s}"' for s in strings)
            message = (
                f"warning: TXT value {value!r} has unquoted whitespace: it is published as "
                f"{len(strings)} strings ({shown}); write '\"{value}\"' for one string"
            )
            path = ("values", index)
            found.append(
                Problem(
                    resource.position(*path), message, str(resource.key), dotted(("spec", *path))
                )
            )
    return found


def _strings(value: str) -> list[str]:
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value)
    except dns.exception.DNSException:
        return []  # validation says what is wrong with it
    assert isinstance(rdata, dns.rdtypes.txtbase.TXTBase)
    return [s.decode("utf-8", "replace") for s in rdata.strings]
