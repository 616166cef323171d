"""``kdig +quic`` (Knot's DNS client) run against a server on 127.0.0.1, its presentation
output parsed: an independent DNS over QUIC client for the DNS and registry tests."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

_HEADER = re.compile(r"->>HEADER<<- opcode: (\w+); status: (\w+); id: (\d+)")
_SECTION = re.compile(r"^;; (\w+) SECTION:$")


def kdig(port: int, name: str, rdtype: str, *options: str) -> dict[str, object]:
    """Run ``kdig +quic`` and parse its presentation output: rcode and RR lines by section."""
    if shutil.which("kdig") is None:
        pytest.fail("kdig is missing: apt-get install knot-dnsutils (.ci/run does)")
    result = subprocess.run(
        [
            "kdig",
            "+quic",
            "@127.0.0.1",
            "-p",
            str(port),
            name,
            rdtype,
            "+timeout=5",
            "+retry=0",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    header = _HEADER.search(result.stdout)
    assert header is not None, result.stdout
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in result.stdout.splitlines():
        started = _SECTION.match(line)
        if started:
            current = started.group(1)
            sections[current] = []
        elif not line.strip() or line.startswith(";;"):
            current = None if not line.strip() else current
        elif current is not None:
            sections[current].append(" ".join(line.split()))
    return {"rcode": header.group(2), "id": int(header.group(3)), "sections": sections}
