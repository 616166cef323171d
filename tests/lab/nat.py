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

Unsolicited packets to a router's own address are dropped in its ``input`` chain (a home router
answers nothing from outside). That also keeps them out of conntrack: an unconfirmed entry is
freed with the dropped packet, so a probe that arrived before the host's own packet cannot take
the tuple the host's mapping needs (which would break simultaneous open).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

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
