"""The skeleton of Unicode Technical Standard #39 (§4, "Confusable Detection"): two strings
are confusable when their skeletons are equal.

    skeleton(X) = NFD(prototype of each character of NFD(X) without its default-ignorables)

The prototypes are Unicode's confusables.txt and the default-ignorable code points its
DerivedCoreProperties.txt, shipped as ``data/confusables.txt`` with their source and date;
``tools/refresh_confusables.py`` regenerates it. Pure: no I/O beyond reading the package's own
data once.
"""

from __future__ import annotations

import bisect
import unicodedata
from functools import cache
from importlib import resources

__all__ = ["skeleton"]


@cache
def _data() -> tuple[dict[str, str], list[tuple[int, int]]]:
    """(character → its prototype, sorted default-ignorable ranges)."""
    text = (
        resources.files("hypermesh.registry")
        .joinpath("data", "confusables.txt")
        .read_text(encoding="utf-8")
    )
    prototypes: dict[str, str] = {}
    ignorable: list[tuple[int, int]] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.partition(" ")
        if head == "ignorable":
            first, _, last = rest.partition("..")
            ignorable.append((int(first, 16), int(last or first, 16)))
        else:
            prototypes[chr(int(head, 16))] = "".join(chr(int(c, 16)) for c in rest.split())
    ignorable.sort()
    return prototypes, ignorable


def _ignorable(char: str, ranges: list[tuple[int, int]]) -> bool:
    at = bisect.bisect_right(ranges, (ord(char), 0x10FFFF)) - 1
    return at >= 0 and ranges[at][0] <= ord(char) <= ranges[at][1]


def skeleton(text: str) -> str:
    """The TS #39 skeleton of ``text``: ``paypal`` spelt with the Cyrillic letters U+0440,
    U+0430 and U+0443 has the skeleton ``paypal``."""
    prototypes, ignorable = _data()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(
        prototypes.get(char, char) for char in decomposed if not _ignorable(char, ignorable)
    )
    return unicodedata.normalize("NFD", mapped)
