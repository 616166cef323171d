"""Regenerate controller/hypermesh/registry/data/root-zone-tlds.txt, the TLDs of the IANA root
zone that a HyperMesh registry refuses to register.

    python tools/refresh_root_tlds.py                       # from IANA (needs the internet)
    python tools/refresh_root_tlds.py public_suffix_list.dat  # from a Public Suffix List file

IANA's list (https://data.iana.org/TLD/tlds-alpha-by-domain.txt) is the source of truth. The
Public Suffix List's ICANN section carries the same TLDs and ships inside PyPI packages (such
as publicsuffixlist), which is how the list was taken on machines without the internet.
"""

from __future__ import annotations

import datetime
import sys
import urllib.request
from pathlib import Path

IANA = "https://data.iana.org/TLD/tlds-alpha-by-domain.txt"
TARGET = (
    Path(__file__).resolve().parent.parent
    / "controller" / "hypermesh" / "registry" / "data" / "root-zone-tlds.txt"
)


def from_iana() -> tuple[set[str], str]:
    with urllib.request.urlopen(IANA, timeout=30) as response:
        text = response.read().decode("ascii")
    labels = {line.strip().lower() for line in text.splitlines() if line and line[0] != "#"}
    return labels, f"{IANA} ({text.splitlines()[0].lstrip('# ')})"


def from_psl(path: Path) -> tuple[set[str], str]:
    text = path.read_text(encoding="utf-8")
    icann = text.split("// ===BEGIN ICANN DOMAINS===")[1].split("// ===END ICANN DOMAINS===")[0]
    labels: set[str] = set()
    for line in icann.splitlines():
        line = line.strip()
        if line and not line.startswith("//"):
            label = line.lstrip("!*.").split(".")[-1]
            labels.add(label.encode("idna").decode("ascii").lower())
    return labels, f"the ICANN section of the Public Suffix List in {path.name}"


def main(argv: list[str]) -> int:
    labels, source = from_psl(Path(argv[1])) if len(argv) > 1 else from_iana()
    today = datetime.date.today().isoformat()
    header = (
        "# The TLDs of the IANA root zone: a HyperMesh registry refuses to register them.\n"
        f"# Source: {source}\n"
        f"# Taken: {today}; {len(labels)} TLDs, lowercase, IDNs as A-labels.\n"
        "# Refresh: python tools/refresh_root_tlds.py [public_suffix_list.dat]\n"
    )
    TARGET.write_text(header + "".join(f"{label}\n" for label in sorted(labels)))
    print(f"wrote {len(labels)} TLDs to {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
