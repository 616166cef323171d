"""Hosts on one machine: network namespaces joined by a bridge, for the mirror tests and the
soak (``bench/soak.py``). Root, ``ip`` and (for ``isolate``) ``nft`` are needed. No pytest
here: the soak imports it outside the tests.

Host i is namespace ``<tag>-<i>`` at ``198.19.<n>.<i+1>/24`` (inside 198.18.0.0/15, set aside for
benchmarking networks by RFC 2544), joined to the bridge by a veth pair whose outer end is
``<tag>v<i>a``; the calling process (in the root namespace) reaches
every host through the bridge's own address, ``.254``. Two ways to part hosts:

- ``cut(i)`` sets host i's outer veth end down: nothing reaches it, the caller neither;
- ``isolate(i, allowed)`` loads an nftables table inside host i's namespace that drops every
  packet to or from an address not in ``allowed`` (loopback always passes): a partition the
  caller can still see across, as a client on both sides of it would.

``remove()`` kills whatever still runs in the namespaces, then deletes them (their nftables
tables with them) and the bridge; it may be called more than once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterable

TABLE = "hmpartition"
"""The nftables table (family inet) ``isolate`` loads inside a namespace."""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def can_make_namespaces() -> bool:
    """Whether this process may make network namespaces (root, ``ip netns``)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"hmprobe{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
        ip("netns", "del", probe)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True


def can_filter() -> bool:
    """Whether ``nft`` is installed (``isolate`` needs it; ``apt-get install nftables``)."""
    return shutil.which("nft") is not None


class Hosts:
    """``count`` namespaces on a bridge (see the module's docstring); ``add`` makes one more."""

    def __init__(self, count: int) -> None:
        self.tag = f"hm{secrets.token_hex(2)}"
        self.subnet = f"198.19.{secrets.randbelow(200) + 20}"
        self.bridge = f"{self.tag}br"
        self.count = 0
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.outside}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for _ in range(count):
                self.add()
        except BaseException:
            self.remove()
            raise

    @property
    def outside(self) -> str:
        """The address the calling process has on the bridge."""
        return f"{self.subnet}.254"

    def add(self) -> int:
        i = self.count
        ns, outside, inside = self.ns(i), self.link(i), f"{self.tag}v{i}b"
        ip("netns", "add", ns)
        self.count += 1  # removed by remove() from here on, whatever fails next
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", ns)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inside)
        ip("-n", ns, "link", "set", inside, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        return i

    def ns(self, i: int) -> str:
        return f"{self.tag}-{i}"

    def link(self, i: int) -> str:
        return f"{self.tag}v{i}a"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def cut(self, i: int) -> None:
        ip("link", "set", self.link(i), "down")

    def restore(self, i: int) -> None:
        ip("link", "set", self.link(i), "up")

    def isolate(self, i: int, allowed: Iterable[str]) -> None:
        """Drop, inside host i, every packet to or from an address not in ``allowed`` (IPv4);
        loopback passes. Replaces an earlier ``isolate`` of the same host."""
        peers = ", ".join(sorted(set(allowed)))
        rules = (
            f"table inet {TABLE} {{\n"
            "  chain input { type filter hook input priority 0; policy accept;\n"
            f'    iifname "lo" accept\n    ip saddr != {{ {peers} }} drop\n'
            "    meta nfproto ipv6 drop\n  }\n"
            "  chain output { type filter hook output priority 0; policy accept;\n"
            f'    oifname "lo" accept\n    ip daddr != {{ {peers} }} drop\n'
            "    meta nfproto ipv6 drop\n  }\n"
            "}\n"
        )
        self.rejoin(i)
        subprocess.run(
            ["ip", "netns", "exec", self.ns(i), "nft", "-f", "-"],
            input=rules.encode(),
            check=True,
            capture_output=True,
            timeout=10,
        )

    def rejoin(self, i: int) -> None:
        """Undo ``isolate`` (nothing when host i is not isolated)."""
        subprocess.run(
            ["ip", "netns", "exec", self.ns(i), "nft", "delete", "table", "inet", TABLE],
            capture_output=True,
            timeout=10,
        )

    def pids(self, i: int) -> list[int]:
        """The processes running in host i's namespace."""
        done = subprocess.run(
            ["ip", "netns", "pids", self.ns(i)], capture_output=True, text=True, timeout=10
        )
        return [int(p) for p in done.stdout.split() if p.isascii() and p.isdigit()]

    def remove(self) -> None:
        for i in range(self.count):
            for pid in self.pids(i):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", self.ns(i)], capture_output=True, timeout=10)
            subprocess.run(["ip", "link", "del", self.link(i)], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=10)
        self.count = 0
