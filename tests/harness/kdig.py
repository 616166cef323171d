"""``kdig`` (Knot's DNS client) run against a server on 127.0.0.1, its presentation output
parsed: an independent DNS client for the DNS, registry and DNS-over-TCP tests (``kdig`` over
QUIC; ``run_kdig`` with the transport and checks a test chooses)."""

from __future__ import annotations

import re
import shutil
import subprocess

import dns.rrset
import pytest

_HEADER = re.compile(r"->>HEADER<<- opcode: (\w+); status: (\w+); id: (\d+)")
_SECTION = re.compile(r"^;; (\w+) SECTION:$")


def run_kdig(port: int, name: str, rdtype: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run ``kdig @127.0.0.1 -p PORT NAME TYPE`` with ``options`` (the transport: ``+quic``,
    ``+tls``, ``+https``…), one try of at most 5 s; its exit code is the caller's to judge."""
    if shutil.which("kdig") is None:
        pytest.fail("kdig is missing: apt-get install knot-dnsutils (.ci/run does)")
    command = ["kdig", "@127.0.0.1", "-p", str(port), name, rdtype, "+timeout=5", "+retry=0"]
    return subprocess.run(
        [*command, *options], capture_output=True, text=True, timeout=30, check=False
    )


def answer_lines(output: str) -> list[str]:
    """The ANSWER section as kdig prints it, one RR a line, fields joined by one space."""
    lines, inside = [], False
    for line in output.splitlines():
        if line.startswith(";; ANSWER SECTION:"):
            inside = True
        elif inside and line.strip() and not line.startswith(";;"):
            lines.append(" ".join(line.split()))
        elif inside:
            break
    return sorted(lines)


def rr_lines(rrsets: list[dns.rrset.RRset]) -> list[str]:
    """``rrsets`` as ``answer_lines`` gives kdig's (for A, AAAA, CNAME, TXT…; not base64 data,
    which kdig splits differently)."""
    return sorted(
        " ".join(line.split()) for rrset in rrsets for line in rrset.to_text().split("\n")
    )


def kdig(port: int, name: str, rdtype: str, *options: str) -> dict[str, object]:
    """Run ``kdig +quic`` and parse its presentation output: rcode and RR lines by section."""
    result = run_kdig(port, name, rdtype, "+quic", *options)
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
