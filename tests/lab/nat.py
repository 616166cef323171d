"""The lab's NAT routers: what each kind is, its nftables rules, and dropping its mappings.

A NATed host of a lab (``Lab.add_host(name, nat=KIND)``) sits behind one router namespace (two
for ``"double"``), each with ``eth0`` on the outside and ``lan0`` on the inside, made by
``tests/lab/lab.py``. This module only describes them: the kinds (RFC 4787 terms), the rules a
router of each kind loads (one nftables table ``ip hmnat`` per router namespace) and the
conntrack flush, run inside a router's namespace as ``python -m tests.lab.nat flush``.

Kinds:

- ``"full-cone"``: endpoint-independent mapping and filtering. ``snat`` to the outside address
  (Linux keeps the source port when it is free, and one host behind the router keeps it free),
  and every UDP or TCP packet that reaches the outside address unsolicited is forwarded to the
  host, same port (a ``dnat`` in ``prerouting``).
- ``"port-restricted"``: Linux's ``masquerade``: endpoint-independent mapping in practice (the
  source port is kept), address-and-port-dependent filtering (only replies to what the host
  sent pass: conntrack).
- ``"symmetric"``: ``masquerade random``: a random outside port per new flow, so each
  destination sees another port (endpoint-dependent mapping), and the filtering of conntrack.
- ``"double"``: a home router (``masquerade``) whose outside is in 100.64.0.0/10 (RFC 6598),
  behind a carrier-grade NAT (``masquerade``) that holds the public address.
- ``"udp-blocked"``: port-restricted, and every forwarded UDP packet is dropped, out and in:
  only TCP (and ICMP) passes.

**Port mapping** (``add_portmap``, after ``Lab.add_host``): the router of a ``"full-cone"``,
``"port-restricted"`` or ``"symmetric"`` host also runs a real NAT-PMP (and PCP) server,
Debian's ``miniupnpd`` (package ``miniupnpd-nftables``), listening on ``lan0``, adding its
``dnat`` and ``accept`` rules to a table ``inet miniupnpd`` of the router's namespace; the
router's ``forward`` chain then also lets in what such a ``dnat`` admitted. miniupnpd refuses
to map (result 3, network failure) when its outside address is private or reserved —
198.18.0.0/15 included — as it should behind another NAT, so such a router's outside
becomes a /32 outside those ranges, ``11.18.X.K`` for the lab's ``198.18.X.0/24`` and slot K
(``11.19.X.K`` for ``198.19.X.0/24``): routed to the router by the lab's internet namespace
and, from the root namespace, into the lab (so nothing on the machine sends it elsewhere); it
exists only in the lab's namespaces.

Unsolicited packets to a router's own address are dropped in its ``input`` chain (a home router
answers nothing from outside). That also keeps them out of conntrack: an unconfirmed entry is
freed with the dropped packet, so a probe that arrived before the host's own packet cannot take
the tuple the host's mapping needs (which would break simultaneous open).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.lab.lab import Host, Lab

KINDS = ("full-cone", "port-restricted", "symmetric", "double", "udp-blocked")
"""What ``Lab.add_host(..., nat=...)`` accepts (besides None: a public address)."""
TABLE = "hmnat"
"""The nftables table (family ip) of every router namespace."""
OUTSIDE, INSIDE = "eth0", "lan0"
"""A router's interfaces: towards the internet (or the carrier-grade NAT), towards its LAN."""


@dataclass
class Router:
    """One NAT router in front of a host (or in front of a home router: the carrier's)."""

    name: str
    """``HOST.rK``: the host it serves and the slot of its outside link."""
    namespace: str
    role: str
    """What it does: a kind of ``KINDS`` but ``"double"``, ``"home"`` (the inner router of
    ``"double"``, a masquerade) or ``"carrier"`` (its carrier-grade NAT, a masquerade)."""
    outside: str
    """The address of its ``eth0``: public, or in 100.64.0.0/10 for a home router behind a
    carrier."""
    inside: str
    """The address of its ``lan0``, the gateway of what is behind it."""
    lan: str
    """The network of its ``lan0`` (a /30)."""

    def shell_hint(self) -> str:
        """The command that opens a shell in this router."""
        return f"ip netns exec {self.namespace} bash"


def check_kind(kind: str | None) -> str | None:
    """``kind`` when it is one of ``KINDS`` or None; a ``ValueError`` naming them otherwise."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"NAT kind {kind!r}: one of {', '.join(KINDS)}, or None for public")
    return kind


def rules(role: str, outside: str, behind: str) -> str:
    """The nftables script of a router of ``role`` whose outside address is ``outside`` and
    whose LAN holds ``behind`` (the host, or the home router behind a carrier)."""
    if role in {"port-restricted", "udp-blocked", "home", "carrier"}:
        mapping = "masquerade"
    elif role == "symmetric":
        mapping = "masquerade random"
    elif role == "full-cone":
        mapping = f"snat to {outside}"
    else:
        raise ValueError(f"router role {role!r}: not a kind a single router has")
    inbound = f'iifname "{OUTSIDE}" oifname "{INSIDE}" ct state established,related accept'
    if role == "full-cone":
        inbound += f'\n    iifname "{OUTSIDE}" oifname "{INSIDE}" ct status dnat accept'
    block_udp = "meta l4proto udp drop\n    " if role == "udp-blocked" else ""
    prerouting = (
        f'    iifname "{OUTSIDE}" ip daddr {outside} meta l4proto {{ tcp, udp }} dnat to {behind}\n'
        if role == "full-cone"
        else ""
    )
    return (
        f"table ip {TABLE} {{\n"
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n"
        f"{prerouting}  }}\n"
        "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "{OUTSIDE}" {mapping}\n  }}\n'
        "  chain input { type filter hook input priority filter; policy drop;\n"
        f'    iifname != "{OUTSIDE}" accept\n    ct state established,related accept\n  }}\n'
        "  chain forward { type filter hook forward priority filter; policy drop;\n"
        f'    {block_udp}iifname "{INSIDE}" oifname "{OUTSIDE}" accept\n'
        f"    {inbound}\n  }}\n}}\n"
    )


# -- port mapping: miniupnpd in a router -----------------------------------------------------

MINIUPNPD = "/usr/sbin/miniupnpd"
PORTMAP_KINDS = ("full-cone", "port-restricted", "symmetric")
"""The kinds whose (single) router may run miniupnpd."""
PORTMAP_TABLE = "miniupnpd"
"""The nftables table (family inet) where miniupnpd adds its rules."""
PORTMAP_START = 10.0
"""Seconds miniupnpd may take to listen."""


def mapped_outside(block: ipaddress.IPv4Network, slot: int) -> str:
    """The outside address of the port-mapping router at ``slot`` of the lab's /24 ``block``:
    ``11.18.X.K`` for ``198.18.X.0/24`` (outside every range miniupnpd calls reserved)."""
    second, third = block.network_address.packed[1:3]
    return f"11.{second}.{third}.{slot}"


def portmap_rules() -> str:
    """The nftables script of a port-mapping router, on top of ``rules``: miniupnpd's table
    (its chains empty, filled by miniupnpd) and, in ``hmnat``, inbound packets a ``dnat``
    admitted let through (miniupnpd's own ``forward`` chain then decides)."""
    return (
        f'add rule ip {TABLE} forward iifname "{OUTSIDE}" oifname "{INSIDE}"'
        " ct status dnat accept\n"
        f"table inet {PORTMAP_TABLE} {{\n"
        "  chain forward { type filter hook forward priority filter; policy drop;\n"
        f'    iifname "{INSIDE}" accept\n    ct state established,related accept\n'
        "    jump miniupnpd\n  }\n"
        "  chain miniupnpd {\n  }\n"
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n"
        "    jump prerouting_miniupnpd\n  }\n"
        "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
        "    jump postrouting_miniupnpd\n  }\n"
        "  chain prerouting_miniupnpd {\n  }\n"
        "  chain postrouting_miniupnpd {\n  }\n}\n"
    )


def miniupnpd_config(lease_file: Path) -> str:
    """miniupnpd's configuration: NAT-PMP and PCP on ``lan0``, no UPnP, mappings only for the
    asking address, ports 1024-65535, its rules in ``PORTMAP_TABLE``."""
    return (
        f"ext_ifname={OUTSIDE}\nlistening_ip={INSIDE}\nipv6_disable=yes\n"
        "enable_natpmp=yes\nenable_upnp=no\nsecure_mode=yes\nsystem_uptime=no\n"
        f"lease_file={lease_file}\n"
        f"upnp_table_name={PORTMAP_TABLE}\nupnp_nat_table_name={PORTMAP_TABLE}\n"
        "upnp_forward_chain=miniupnpd\nupnp_nat_chain=prerouting_miniupnpd\n"
        "upnp_nat_postrouting_chain=postrouting_miniupnpd\n"
        "allow 1024-65535 0.0.0.0/0 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
    )


@dataclass
class PortMap:
    """miniupnpd running in a host's router: where, its files and its process."""

    router: Router
    address: str
    """The router's outside address: what NAT-PMP answers as the external address."""
    directory: Path
    process: subprocess.Popen[str]

    @property
    def lease_file(self) -> Path:
        return self.directory / "leases"

    @property
    def log_file(self) -> Path:
        return self.directory / "miniupnpd.log"

    def leases(self) -> list[str]:
        """miniupnpd's lease file: a line per mapping (``UDP:EXT:HOST:PORT:EXPIRY:DESC``)."""
        with contextlib.suppress(OSError):
            return [line for line in self.lease_file.read_text().splitlines() if line]
        return []

    def redirects(self) -> list[str]:
        """The ``dnat`` rules miniupnpd holds now in the router (one line each)."""
        from tests.lab.lab import in_ns, sh

        text = sh(
            *in_ns(self.router.namespace, ["nft", "list", "table", "inet", PORTMAP_TABLE]),
            check=False,
        )
        return [line.strip() for line in text.splitlines() if "dnat" in line]

    def stop(self) -> None:
        """Stop miniupnpd (SIGTERM: it removes its rules; then SIGKILL if it lingers)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def add_portmap(lab: Lab, host: Host, directory: Path) -> PortMap:
    """Make ``host``'s router (of a kind of ``PORTMAP_KINDS``) run miniupnpd (see the module's
    docstring): its outside renumbered to ``mapped_outside``, miniupnpd's table, its files
    under ``directory``; returns once miniupnpd listens. The lab stops it on close."""
    from tests.lab.lab import LabError, in_ns, python_env, sh

    if host.nat not in PORTMAP_KINDS or len(host.routers) != 1:
        raise LabError(f"host {host.name}: port mapping needs one router of {PORTMAP_KINDS}")
    if not Path(MINIUPNPD).exists():
        raise LabError(f"{MINIUPNPD} is missing: apt-get install -y miniupnpd-nftables")
    router = host.routers[0]
    gateway = str(ipaddress.ip_address(router.outside) - 1)
    outside = mapped_outside(lab.block, host.index)
    ns = router.namespace
    sh("ip", "-n", ns, "addr", "flush", "dev", OUTSIDE)
    sh("ip", "-n", ns, "addr", "add", f"{outside}/32", "dev", OUTSIDE)
    sh("ip", "-n", ns, "route", "add", "default", "via", gateway, "dev", OUTSIDE, "onlink")
    sh("ip", "-n", lab.internet, "route", "add", f"{outside}/32", "dev", host.outer)
    root_gateway = str(ipaddress.ip_address(lab.root_address) - 1)
    sh("ip", "route", "add", f"{outside}/32", "via", root_gateway, "dev", lab.root_link)
    router.outside = host.public_address = outside
    sh(*in_ns(ns, ["nft", "-f", "-"]), input=portmap_rules())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = directory / "miniupnpd.conf"
    config.write_text(miniupnpd_config(directory / "leases"))
    log = (directory / "miniupnpd.log").open("w")
    process = subprocess.Popen(
        in_ns(ns, [MINIUPNPD, "-f", str(config), "-P", str(directory / "pid"), "-d"]),
        env=python_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    log.close()
    lab.processes.append(process)
    mapper = PortMap(router, outside, directory, process)
    deadline = time.monotonic() + PORTMAP_START
    while "Listening for NAT-PMP" not in mapper.log_file.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            mapper.stop()
            raise LabError(
                f"miniupnpd in {router.name} did not start:\n{mapper.log_file.read_text()}"
            )
        time.sleep(0.05)
    return mapper


# -- dropping mappings: a ctnetlink flush, no conntrack tool needed ----------------------------

NETLINK_NETFILTER = 12
CTNETLINK_DELETE = (1 << 8) | 2
"""NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE: with no tuple, a flush."""
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 1, 4, 2


def flush() -> None:
    """Delete every IPv4 conntrack entry of this process's network namespace (with them, its
    NAT mappings): what ``conntrack -F`` does, over netlink. An ``OSError`` when refused."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(5)
        sock.bind((0, 0))
        body = struct.pack("=BBH", socket.AF_INET, 0, 0)  # nfgenmsg: family, version, res_id
        header = struct.pack(
            "=IHHII", 16 + len(body), CTNETLINK_DELETE, NLM_F_REQUEST | NLM_F_ACK, 1, 0
        )
        sock.send(header + body)
        answer = sock.recv(65536)
    if len(answer) < 20:
        raise OSError(f"conntrack flush: a short netlink answer ({len(answer)} bytes)")
    kind = struct.unpack_from("=H", answer, 4)[0]
    error = struct.unpack_from("=i", answer, 16)[0]
    if kind != NLMSG_ERROR:
        raise OSError(f"conntrack flush: netlink answered type {kind}, not an acknowledgement")
    if error != 0:
        raise OSError(-error, f"conntrack flush refused: {os.strerror(-error)}")


def entries() -> list[str]:
    """This namespace's conntrack entries, one line each (``/proc/net/nf_conntrack``)."""
    path = Path("/proc/net/nf_conntrack")
    return path.read_text().splitlines() if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.nat", description=__doc__)
    parser.add_argument("command", choices=["flush", "entries"])
    args = parser.parse_args(argv)
    if args.command == "flush":
        try:
            flush()
        except OSError as exc:
            print(f"python -m tests.lab.nat flush: {exc}", file=sys.stderr)
            return 1
    else:
        print("\n".join(entries()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
