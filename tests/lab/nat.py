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
``"port-restricted"`` or ``"symmetric"`` host also runs the lab's own NAT-PMP server
(``tests/lab/natpmp_router.py``, RFC 6886) on its ``lan0`` address, port 5351. It answers the
router's outside address (in 198.18.0.0/15, as every router's) as the external one, writes a
``dnat`` per mapping into a table ``ip hmpmp`` of the router's namespace, and logs each
mapping added, renewed and deleted (at the host's request, expired, or the server stopped)
as a JSON line; the router's ``forward`` chain then also lets in what such a ``dnat``
admitted. Real routers run miniupnpd or their own; miniupnpd refuses to map when its outside
address is reserved, as the lab's are, hence a server of the lab's own.

Unsolicited packets to a router's own address are dropped in its ``input`` chain (a home router
answers nothing from outside). That also keeps them out of conntrack: an unconfirmed entry is
freed with the dropped packet, so a probe that arrived before the host's own packet cannot take
the tuple the host's mapping needs (which would break simultaneous open).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


# -- port mapping: the lab's NAT-PMP server in a router ------------------------------------

PORTMAP_KINDS = ("full-cone", "port-restricted", "symmetric")
"""The kinds whose (single) router may run the lab's NAT-PMP server."""
PORTMAP_TABLE = "hmpmp"
"""The nftables table (family ip) where the server writes its ``dnat`` rules
(``tests.lab.natpmp_router.TABLE``)."""
PORTMAP_START = 10.0
"""Seconds the server may take to listen."""


def portmap_rules() -> str:
    """What a port-mapping router adds to ``rules``: inbound packets a ``dnat`` admitted (the
    server's mappings; full cone's own) let through its ``forward`` chain."""
    return (
        f'add rule ip {TABLE} forward iifname "{OUTSIDE}" oifname "{INSIDE}"'
        " ct status dnat accept\n"
    )


@dataclass
class PortMap:
    """The lab's NAT-PMP server running in a host's router: where, its files, its process."""

    router: Router
    address: str
    """The router's outside address: what NAT-PMP answers as the external address."""
    directory: Path
    process: subprocess.Popen[str]

    @property
    def log_file(self) -> Path:
        """The server's events, one JSON object a line (``tests.lab.natpmp_router``)."""
        return self.directory / "natpmp.log"

    @property
    def output_file(self) -> Path:
        """What the server printed (its errors)."""
        return self.directory / "natpmp.out"

    def events(self) -> list[dict[str, Any]]:
        """The server's log, parsed (a line cut short by a write in progress is left out)."""
        found: list[dict[str, Any]] = []
        with contextlib.suppress(OSError):
            for line in self.log_file.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def held(self) -> list[dict[str, Any]]:
        """The mappings held now, by the log: the last ``add`` or ``renew`` of each protocol
        and internal address not deleted since."""
        current: dict[tuple[str, str], dict[str, Any]] = {}
        for event in self.events():
            key = (str(event.get("protocol")), str(event.get("internal")))
            if event.get("event") in {"add", "renew"}:
                current[key] = event
            elif event.get("event") == "delete":
                current.pop(key, None)
        return list(current.values())

    def redirects(self) -> list[str]:
        """The ``dnat`` rules the server holds now in the router (one line each)."""
        from tests.lab.lab import in_ns, sh

        text = sh(
            *in_ns(self.router.namespace, ["nft", "list", "table", "ip", PORTMAP_TABLE]),
            check=False,
        )
        return [line.strip() for line in text.splitlines() if "dnat" in line]

    def stop(self) -> None:
        """Stop the server (SIGTERM: it deletes its mappings and its table; then SIGKILL)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def add_portmap(lab: Lab, host: Host, directory: Path) -> PortMap:
    """Make ``host``'s router (of a kind of ``PORTMAP_KINDS``) run the lab's NAT-PMP server
    (``python -m tests.lab.natpmp_router``) on its ``lan0`` address, port 5351, answering its
    own outside address (198.18.0.0/15, like every router's) as the external one; its log
    under ``directory``. Returns once it listens; the lab stops it on close."""
    from tests.lab.lab import LabError, in_ns, sh

    if host.nat not in PORTMAP_KINDS or len(host.routers) != 1:
        raise LabError(f"host {host.name}: port mapping needs one router of {PORTMAP_KINDS}")
    router = host.routers[0]
    sh(*in_ns(router.namespace, ["nft", "-f", "-"]), input=portmap_rules())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    mapper = PortMap(router, router.outside, directory, _start_server(router, directory))
    lab.processes.append(mapper.process)
    deadline = time.monotonic() + PORTMAP_START
    while not any(e.get("event") == "listening" for e in mapper.events()):
        if mapper.process.poll() is not None or time.monotonic() > deadline:
            mapper.stop()
            raise LabError(
                f"the NAT-PMP server in {router.name} did not start:\n"
                + mapper.output_file.read_text(errors="replace")
            )
        time.sleep(0.05)
    return mapper


def _start_server(router: Router, directory: Path) -> subprocess.Popen[str]:
    from tests.lab.lab import in_ns, python_env

    argv = [
        sys.executable, "-m", "tests.lab.natpmp_router", "--listen", router.inside,
        "--lan", router.lan, "--external", router.outside,
        "--log", str(directory / "natpmp.log"),
    ]  # fmt: skip
    with (directory / "natpmp.out").open("w") as output:
        return subprocess.Popen(
            in_ns(router.namespace, argv),
            env=python_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
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
