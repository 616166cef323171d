"""The network lab: Linux network namespaces as hosts, joined through an "internet" namespace.

Layout (one lab; ``TAG`` is random, so several labs run at once without colliding):

- ``TAG-inet``: the internet, a namespace that routes (``ip_forward``) between every host and
  the root namespace, and filters (an nftables table ``inet hmlab``): loss per link
  (``numgen random mod 1000 < N drop``, both directions) and cuts (a set of cut links).
- ``TAG-NAME``: a host, joined to the internet by its own link, ``eth0`` inside the host and
  ``TAGhK`` inside the internet. A link is a veth pair, or, when the host is added with
  ``delay_ms``, two TUN devices with a forwarder process between them (``tests/lab/delay.py``)
  that holds every packet ``delay ± jitter`` ms each way.
- Addresses: each lab takes a free /24 of 198.18.0.0/15 (RFC 2544's benchmarking range) and
  cuts it in /30s: the root namespace's link is the first (``.1`` internet side, ``.2`` the
  root namespace), host K (1..63) the K-th (``.4K+1`` internet side, ``.4K+2`` the host,
  which routes everything through ``.4K+1``). The root namespace (the tests) routes the lab's
  /24 through the internet, so a test talks to the nodes of every host, and they to it.
- NAT (``add_host(name, nat=KIND)``, kinds in ``tests/lab/nat.py``): the host's link goes to a
  router namespace ``TAG-NAME.rK`` instead (its ``lan0``), and the router takes the host's slot
  K of the lab's /24 on its ``eth0``, the link into the internet (the one ``delay_ms``, ``loss``
  and ``cut`` act on). LANs are /30s of a second /24 of 198.18.0.0/15 the lab takes (never
  routed outside its routers); a ``"double"`` host's home router sits behind a carrier-grade
  NAT ``TAG-NAME.cK`` whose inside networks are /30s of a /24 of 100.64.0.0/10 the lab takes.
  ``move`` re-homes a host (new LAN, new outside address) keeping its processes.

``close()`` kills every process started in the lab's namespaces, removes the namespaces, the
links, the route and with them the nftables table; it is idempotent, runs on ``with`` exit, at
interpreter exit and on SIGTERM/SIGHUP (when nothing else handles them), and a lab left behind
by a killed process is swept by the next lab made on the machine (or ``python -m tests.lab
--clean``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from tests.lab import nat as natmod
from tests.lab.nat import Router

RANGE = ipaddress.IPv4Network("198.18.0.0/15")
"""Where every lab takes its /24 (RFC 2544: set aside for benchmarking, never routed)."""
CARRIER = ipaddress.IPv4Network("100.64.0.0/10")
"""Where every lab takes the /24 of its carrier-grade NATs' inside networks (RFC 6598)."""
PREFERRED = ipaddress.IPv4Network("198.18.0.0/16")
"""Taken first: tests/harness/netns.py's bridges pick from 198.19.0.0/16 without asking."""
RECORDS = Path("/run/hmlab")
"""One file per live lab (its owner's pid), so a later lab can sweep one whose owner died."""
TABLE = "hmlab"
"""The nftables table (family inet) in the internet namespace."""
MAX_HOSTS = 63
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")
REPO = Path(__file__).resolve().parents[2]


class LabError(Exception):
    """The lab cannot do what was asked (a message saying what and where)."""


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    """Run a command of the lab's plumbing (``ip``, ``nft``); its output. On failure the error
    names the command and what it printed."""
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def in_ns(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *argv]


@dataclass
class Host:
    """One host of a lab: a namespace with one link to the internet, or to its NAT router."""

    lab: Lab
    name: str
    index: int
    """The slot of its uplink (its own link, or its outermost router's) in the lab's /24."""
    namespace: str
    address: str
    """Its own address (on its LAN when behind NAT)."""
    gateway: str
    outer: str
    """The name of its uplink inside the internet namespace."""
    delay_ms: float | None = None
    jitter_ms: float = 0.0
    loss: float = 0.0
    forwarder: subprocess.Popen[str] | None = field(default=None, repr=False)
    """The delay forwarder of its uplink (a TUN link)."""
    nat: str | None = None
    """Its NAT kind (``tests/lab/nat.py``), None when its address is public."""
    public_address: str = ""
    """The address the internet sees its packets come from: ``address`` when public, its
    outermost router's outside address behind NAT."""
    routers: list[Router] = field(default_factory=list)
    """Its NAT routers, the nearest first (none when public, two for ``"double"``)."""

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float = 120,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this host to completion (text output captured)."""
        return subprocess.run(
            in_ns(self.namespace, argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def popen(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.STDOUT,
    ) -> subprocess.Popen[str]:
        """Start ``argv`` in this host (its own session); the lab stops it on close."""
        process = subprocess.Popen(
            in_ns(self.namespace, argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        self.lab.processes.append(process)
        return process

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` in this host, with the repository importable."""
        return self.run([sys.executable, "-c", code], env=python_env(), timeout=timeout)

    def shell_hint(self) -> str:
        """The command that opens a shell in this host."""
        return f"ip netns exec {self.namespace} bash"


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the repository on ``PYTHONPATH`` (and ``extra``)."""
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


class Lab:
    """Hosts in namespaces around an internet namespace (see the module's docstring)."""

    def __init__(self, delay_ms: float | None = None, jitter_ms: float = 0.0, loss: float = 0.0):
        """A lab with no host yet. ``delay_ms``, ``jitter_ms`` and ``loss`` are the defaults of
        ``add_host`` (a lab where every link is slow and lossy)."""
        self.tag = "hl" + secrets.token_hex(3)
        self.defaults = (delay_ms, jitter_ms, loss)
        self.hosts: dict[str, Host] = {}
        self.processes: list[subprocess.Popen[str]] = []
        self.closed = False
        self.internet = f"{self.tag}-inet"
        self.root_link = f"{self.tag}r0"
        self.used = {"slot": 0, "lan": 0, "carrier": 0}
        """How many /30s of each block were handed out (slots are never reused, even by
        ``move``)."""
        self.retired: list[subprocess.Popen[str]] = []
        """Delay forwarders of links that ``move`` replaced (stopped there; again on close)."""
        _guard(self)
        try:
            self.block, self.lan_block, self.carrier_block = _allocate(self.tag)
            self._make_internet()
        except BaseException:
            self.close()
            raise

    # -- the internet --------------------------------------------------------------------------

    def _address(self, index: int, offset: int) -> str:
        return str(self.block.network_address + 4 * index + offset)

    def _take(self, kind: str) -> int:
        """The next free /30 of ``kind`` (``"slot"``: the lab's /24; ``"lan"``, ``"carrier"``)."""
        if self.used[kind] >= MAX_HOSTS:
            what = {"slot": "links to the internet", "lan": "LANs", "carrier": "carrier LANs"}
            raise LabError(f"lab {self.tag} is full ({MAX_HOSTS} {what[kind]})")
        self.used[kind] += 1
        return self.used[kind]

    @property
    def root_address(self) -> str:
        """The root namespace's address in the lab (where the tests are, seen from a host)."""
        return self._address(0, 2)

    def _make_internet(self) -> None:
        sh("ip", "netns", "add", self.internet)
        self._sysctl(self.internet, "net.ipv4.ip_forward=1")
        sh("ip", "-n", self.internet, "link", "set", "lo", "up")
        peer = f"{self.tag}r1"
        sh(
            "ip",
            "link",
            "add",
            self.root_link,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            self.internet,
        )
        sh("ip", "addr", "add", f"{self.root_address}/30", "dev", self.root_link)
        sh("ip", "link", "set", self.root_link, "up")
        sh("ip", "-n", self.internet, "addr", "add", f"{self._address(0, 1)}/30", "dev", peer)
        sh("ip", "-n", self.internet, "link", "set", peer, "up")
        sh("ip", "route", "add", str(self.block), "via", self._address(0, 1), "dev", self.root_link)
        rules = (
            f"table inet {TABLE} {{\n  set cut {{ type ifname; }}\n"
            "  chain input { type filter hook input priority 0; policy accept;\n"
            "    iifname @cut drop\n  }\n"
            "  chain forward { type filter hook forward priority 0; policy accept;\n"
            "    iifname @cut drop\n    oifname @cut drop\n  }\n}\n"
        )
        sh(*in_ns(self.internet, ["nft", "-f", "-"]), input=rules)

    def _sysctl(self, namespace: str, setting: str) -> None:
        sh(*in_ns(namespace, ["sysctl", "-qw", setting]))

    # -- hosts ---------------------------------------------------------------------------------

    def add_host(
        self,
        name: str,
        delay_ms: float | None = None,
        jitter_ms: float | None = None,
        loss: float | None = None,
        nat: str | None = None,
    ) -> Host:
        """A new host ``name`` (lowercase letters, digits, dashes; at most 20). With
        ``delay_ms`` (even 0) its link is a TUN pair through a delay forwarder, whose delay and
        jitter ``set_link`` may change later; without, a veth pair. ``loss`` (0..1, per
        direction, resolution 0.001) applies to either. With ``nat`` (a kind of
        ``tests/lab/nat.py``: ``"full-cone"``, ``"port-restricted"``, ``"symmetric"``,
        ``"double"``, ``"udp-blocked"``) the host sits behind NAT router(s) and that link is
        its outermost router's."""
        if self.closed:
            raise LabError(f"lab {self.tag} is closed: make a new one")
        if not NAME.match(name):
            raise LabError(f"host name {name!r}: 1-20 of a-z, 0-9 and '-', not at either end")
        if name in self.hosts:
            raise LabError(f"lab {self.tag} already has a host {name!r}")
        _check_kind(name, nat)
        default_delay, default_jitter, default_loss = self.defaults
        host = Host(
            lab=self,
            name=name,
            index=0,
            namespace=f"{self.tag}-{name}",
            address="",
            gateway="",
            outer="",
            delay_ms=default_delay if delay_ms is None else delay_ms,
            jitter_ms=default_jitter if jitter_ms is None else jitter_ms,
        )
        sh("ip", "netns", "add", host.namespace)
        self.hosts[name] = host  # removed by close() from here on, whatever fails next
        sh("ip", "-n", host.namespace, "link", "set", "lo", "up")
        self._attach(host, nat, default_loss if loss is None else loss)
        return host

    def _attach(self, host: Host, nat: str | None, loss: float) -> None:
        """Join ``host`` to the internet: its own uplink at a new slot, or through new NAT
        routers of kind ``nat`` whose outermost takes that slot."""
        index = self._take("slot")
        host.index, host.outer, host.nat = index, f"{self.tag}h{index}", nat
        if nat is None:
            self._uplink(host, host.namespace)
            host.address, host.gateway = self._address(index, 2), self._address(index, 1)
        else:
            self._routers(host, nat)
        host.public_address = host.routers[-1].outside if host.routers else host.address
        self.set_link(host.name, loss=loss)

    def _uplink(self, host: Host, namespace: str) -> None:
        """The link at ``host``'s slot between ``namespace`` (its ``eth0``, default route
        through the internet) and the internet (``host.outer``, a loss chain)."""
        index = host.index
        if host.delay_ms is None:
            sh(
                "ip",
                "link",
                "add",
                host.outer,
                "netns",
                self.internet,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                namespace,
            )
        else:
            self._tun_link(host, namespace)
        sh("ip", "-n", namespace, "addr", "add", f"{self._address(index, 2)}/30", "dev", "eth0")
        sh("ip", "-n", namespace, "link", "set", "eth0", "up")
        sh("ip", "-n", namespace, "route", "add", "default", "via", self._address(index, 1))
        gateway = f"{self._address(index, 1)}/30"
        sh("ip", "-n", self.internet, "addr", "add", gateway, "dev", host.outer)
        sh("ip", "-n", self.internet, "link", "set", host.outer, "up")
        chain = f"link{index}"
        sh(
            *in_ns(self.internet, ["nft", "-f", "-"]),
            input=(
                f"add chain inet {TABLE} {chain}\n"
                f'add rule inet {TABLE} forward iifname "{host.outer}" jump {chain}\n'
                f'add rule inet {TABLE} forward oifname "{host.outer}" jump {chain}\n'
            ),
        )

    def _tun_link(self, host: Host, namespace: str) -> None:
        """Join ``namespace`` (the host's, or its outermost router's) to the internet by two
        TUN devices and a delay forwarder (``tests/lab/delay.py``)."""
        inside, outside = f"{self.tag}t{host.index}a", f"{self.tag}t{host.index}b"
        forwarder = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.lab.delay",
                inside,
                outside,
                "--delay-ms",
                str(host.delay_ms),
                "--jitter-ms",
                str(host.jitter_ms),
            ],
            env=python_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        host.forwarder = forwarder
        assert forwarder.stdout is not None
        ready = forwarder.stdout.readline()
        if ready.strip() != "ready":
            forwarder.kill()
            forwarder.wait()
            raise LabError(f"host {host.name}: the delay forwarder did not start ({ready!r})")
        sh("ip", "link", "set", inside, "netns", namespace)
        sh("ip", "-n", namespace, "link", "set", inside, "name", "eth0")
        sh("ip", "link", "set", outside, "netns", self.internet)
        sh("ip", "-n", self.internet, "link", "set", outside, "name", host.outer)

    # -- NAT -----------------------------------------------------------------------------------

    def _routers(self, host: Host, kind: str) -> None:
        """Put ``host`` behind new router(s) of ``kind``: for ``"double"`` a home router behind
        a carrier-grade NAT, else one router; the outermost takes ``host``'s slot."""
        slot, lan = host.index, self.lan_block
        lan_index = self._take("lan")
        lan_net = f"{lan.network_address + 4 * lan_index}/30"
        home = Router(
            name=f"{host.name}.r{slot}",
            namespace=f"{self.tag}-{host.name}.r{slot}",
            role="home" if kind == "double" else kind,
            outside=self._address(slot, 2),
            inside=str(lan.network_address + 4 * lan_index + 1),
            lan=lan_net,
        )
        host.address = str(lan.network_address + 4 * lan_index + 2)
        host.gateway = home.inside
        if kind == "double":
            carrier_index, carrier = self._take("carrier"), self.carrier_block
            base = carrier.network_address + 4 * carrier_index
            outer = Router(
                name=f"{host.name}.c{slot}",
                namespace=f"{self.tag}-{host.name}.c{slot}",
                role="carrier",
                outside=self._address(slot, 2),
                inside=str(base + 1),
                lan=f"{base}/30",
            )
            home.outside = str(base + 2)
            self._router(host, outer, upper=None, behind=home.outside)
            self._router(host, home, upper=outer, behind=host.address)
        else:
            self._router(host, home, upper=None, behind=host.address)
        host.routers.sort(key=lambda r: r.role == "carrier")  # the nearest first
        _lan_link(home, host.namespace, host.address)

    def _router(self, host: Host, router: Router, upper: Router | None, behind: str) -> None:
        """Make ``router``'s namespace: forwarding, its outside link (the host's uplink, or a
        LAN link from the ``upper`` router) and its rules (``behind``: the address it serves)."""
        sh("ip", "netns", "add", router.namespace)
        host.routers.append(router)  # removed by close() or move() from here on
        sh("ip", "-n", router.namespace, "link", "set", "lo", "up")
        self._sysctl(router.namespace, "net.ipv4.ip_forward=1")
        if upper is None:
            self._uplink(host, router.namespace)
        else:
            _lan_link(upper, router.namespace, router.outside)
        script = natmod.rules(router.role, router.outside, behind)
        sh(*in_ns(router.namespace, ["nft", "-f", "-"]), input=script)

    def move(
        self,
        name: str,
        nat: str | None = None,
        delay_ms: float | None = None,
        jitter_ms: float | None = None,
        loss: float | None = None,
    ) -> Host:
        """Re-home host ``name`` behind new router(s) of kind ``nat`` (None: a new public
        address): a new LAN address, a new outside address, new (empty) mappings, as a laptop
        moving to another network. Its processes keep running (sockets bound to the old
        address stop working; those bound to 0.0.0.0 go on with the new one). Its link keeps
        its delay, jitter and loss unless given; a cut is not carried over."""
        host = self.host(name)
        _check_kind(name, nat)
        if delay_ms is not None:
            host.delay_ms = delay_ms
        host.jitter_ms = host.jitter_ms if jitter_ms is None else jitter_ms
        self._detach(host)
        self._attach(host, nat, host.loss if loss is None else loss)
        return host

    def _detach(self, host: Host) -> None:
        """Take ``host`` off its network: its uplink's forwarder, its routers, its ``eth0``."""
        if host.forwarder is not None:
            self.retired.append(host.forwarder)
            with contextlib.suppress(OSError):
                if host.forwarder.stdin is not None:
                    host.forwarder.stdin.close()  # its TUN devices go with it
            _stop([host.forwarder], grace=2.0)
            host.forwarder = None
        for router in host.routers:
            _kill_namespace(router.namespace)
            sh("ip", "netns", "del", router.namespace, check=False)
        host.routers = []
        sh("ip", "-n", self.internet, "link", "del", host.outer, check=False)
        sh("ip", "-n", host.namespace, "link", "del", "eth0", check=False)
        self.heal(host.name)

    def flush_conntrack(self, name: str) -> int:
        """Drop the NAT mappings of host ``name``'s routers (their whole conntrack tables, as
        ``conntrack -F`` would, over netlink): what a router reboot or a mapping timeout does.
        The number of routers flushed (0 for a public host)."""
        for router in self.host(name).routers:
            done = subprocess.run(
                in_ns(router.namespace, [sys.executable, "-m", "tests.lab.nat", "flush"]),
                env=python_env(),
                capture_output=True,
                text=True,
                timeout=20,
            )
            if done.returncode != 0:
                raise LabError(f"router {router.name}: {done.stderr.strip() or 'flush failed'}")
        return len(self.host(name).routers)

    def mappings(self, name: str) -> list[str]:
        """The conntrack entries of host ``name``'s routers (``/proc/net/nf_conntrack`` lines,
        each prefixed with its router's name): its NAT mappings, to look at."""
        found = []
        for router in self.host(name).routers:
            text = sh(*in_ns(router.namespace, ["cat", "/proc/net/nf_conntrack"]), check=False)
            found += [f"{router.name}: {line}" for line in text.splitlines() if line]
        return found

    def host(self, name: str) -> Host:
        """The host called ``name``."""
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(f"lab {self.tag} has no host {name!r} ({sorted(self.hosts)})") from None

    def set_link(
        self,
        name: str,
        delay_ms: float | None = None,
        jitter_ms: float | None = None,
        loss: float | None = None,
    ) -> None:
        """Change the link of host ``name``: its loss (any link), its delay and jitter (a link
        made with ``delay_ms``). What is not given stays."""
        host = self.host(name)
        if loss is not None:
            if not 0.0 <= loss <= 1.0:
                raise LabError(f"host {name}: loss {loss} is not between 0 and 1")
            per_mille = round(loss * 1000)
            rule = f"numgen random mod 1000 < {per_mille} drop\n" if per_mille else ""
            rule = "drop\n" if per_mille >= 1000 else rule  # nft refuses "< 1000" (0..999)
            chain = f"inet {TABLE} link{host.index}"
            script = f"flush chain {chain}\n" + (f"add rule {chain} {rule}" if rule else "")
            sh(*in_ns(self.internet, ["nft", "-f", "-"]), input=script)
            host.loss = loss
        if delay_ms is None and jitter_ms is None:
            return
        if host.forwarder is None or host.forwarder.stdin is None:
            raise LabError(
                f"host {name} has a veth link, which cannot be delayed: add it with "
                "add_host(name, delay_ms=...) (or Lab(delay_ms=...)) for a delay link"
            )
        host.delay_ms = host.delay_ms if delay_ms is None else delay_ms
        host.jitter_ms = host.jitter_ms if jitter_ms is None else jitter_ms
        host.forwarder.stdin.write(f"{host.delay_ms} {host.jitter_ms}\n")
        host.forwarder.stdin.flush()

    def cut(self, name: str) -> None:
        """Cut host ``name`` off: nothing passes its link either way (the root namespace
        cannot reach it either) until ``heal``."""
        outer = self.host(name).outer
        sh(*in_ns(self.internet, ["nft", "add", "element", "inet", TABLE, "cut", f"{{ {outer} }}"]))

    def heal(self, name: str) -> None:
        """Undo ``cut`` (nothing when the host is not cut)."""
        outer = self.host(name).outer
        sh(
            *in_ns(
                self.internet, ["nft", "delete", "element", "inet", TABLE, "cut", f"{{ {outer} }}"]
            ),
            check=False,
        )

    # -- the end -------------------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        """Every namespace of the lab: hosts, their routers, the internet."""
        routers = [r.namespace for h in self.hosts.values() for r in h.routers]
        return [h.namespace for h in self.hosts.values()] + routers + [self.internet]

    def close(self) -> None:
        """Stop everything the lab started and remove everything it made (idempotent)."""
        if self.closed:
            return
        self.closed = True
        _stop(self.processes)
        forwarders = [h.forwarder for h in self.hosts.values() if h.forwarder is not None]
        forwarders += self.retired
        _remove(self.tag, self.namespaces(), self.root_link, forwarders)
        if getattr(self, "block", None) is not None:
            sh("ip", "route", "del", str(self.block), check=False)
        (RECORDS / f"{self.tag}.json").unlink(missing_ok=True)
        _OPEN.discard(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> Iterator[str]:
        """Lines telling a person what the lab is and how to enter its hosts."""
        yield f"lab {self.tag}: {self.block}, the root namespace at {self.root_address}"
        if any(h.routers for h in self.hosts.values()):
            yield f"  LANs in {self.lan_block}, carrier-grade NAT insides in {self.carrier_block}"
        for host in self.hosts.values():
            link = "veth" if host.delay_ms is None else f"tun {host.delay_ms}±{host.jitter_ms} ms"
            behind = f" behind {host.nat} NAT, seen as {host.public_address}" if host.nat else ""
            yield (
                f"  {host.name:<12} {host.address:<15}{behind} ({link}, loss {host.loss:g})  "
                f"{host.shell_hint()}"
            )
            for router in host.routers:
                yield (
                    f"    router {router.name} ({router.role}): outside {router.outside}, "
                    f"inside {router.inside} ({router.lan})  {router.shell_hint()}"
                )


def _check_kind(name: str, nat: str | None) -> None:
    try:
        natmod.check_kind(nat)
    except ValueError as exc:
        raise LabError(f"host {name}: {exc}") from None


def _lan_link(upper: Router, namespace: str, address: str) -> None:
    """A veth from ``upper``'s ``lan0`` (its inside address) to ``namespace``'s ``eth0``
    (``address``, default route through ``upper``)."""
    veth = ["type", "veth", "peer", "name", "eth0", "netns", namespace]
    sh("ip", "link", "add", "lan0", "netns", upper.namespace, *veth)
    sh("ip", "-n", upper.namespace, "addr", "add", f"{upper.inside}/30", "dev", "lan0")
    sh("ip", "-n", upper.namespace, "link", "set", "lan0", "up")
    sh("ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", "eth0")
    sh("ip", "-n", namespace, "link", "set", "eth0", "up")
    sh("ip", "-n", namespace, "route", "add", "default", "via", upper.inside)


# -- processes and removal ---------------------------------------------------------------------


def _stop(processes: list[subprocess.Popen[str]], grace: float = 3.0) -> None:
    """SIGTERM every process (its whole session), SIGKILL what is left after ``grace`` s."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


def _kill_namespace(namespace: str) -> None:
    """SIGKILL every process in ``namespace``, until none is left (bounded)."""
    for _ in range(20):
        found = sh("ip", "netns", "pids", namespace, check=False).split()
        pids = [int(p) for p in found if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _remove(
    tag: str,
    namespaces: list[str],
    root_link: str,
    forwarders: Sequence[subprocess.Popen[str]] = (),
) -> None:
    for namespace in namespaces:
        _kill_namespace(namespace)
    for forwarder in forwarders:
        with contextlib.suppress(OSError):
            if forwarder.stdin is not None:
                forwarder.stdin.close()  # end of input ends it, its TUN devices with it
    _stop(list(forwarders), grace=2.0)
    internet = f"{tag}-inet"
    for line in sh("ip", "-n", internet, "-o", "link", "show", check=False).splitlines():
        link = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if link.startswith(f"{tag}h"):
            sh("ip", "-n", internet, "link", "del", link, check=False)
    sh("ip", "link", "del", root_link, check=False)
    for namespace in namespaces:
        sh("ip", "netns", "del", namespace, check=False)


# -- allocation, records, sweeping -------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 prefix routed or assigned in the root namespace."""
    found = []
    for line in sh("ip", "-4", "route", "show", "table", "all", check=False).splitlines():
        first = line.split()[0] if line.split() else ""
        first = line.split()[1] if first in {"local", "broadcast", "unicast"} else first
        with contextlib.suppress(ValueError, IndexError):
            found.append(ipaddress.IPv4Network(first, strict=False))
    return found


def _allocate(
    tag: str,
) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """The lab's blocks, recorded as its own (under a lock, so labs made at once take
    different ones): a /24 of 198.18.0.0/15 nothing on this machine uses (its hosts and routers'
    outsides), another for its LANs, and a /24 of 100.64.0.0/10 for its carrier-grade NATs'
    insides (those two are never routed outside the lab's namespaces: only other labs matter)."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    with (RECORDS / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep()
        records = _records()
        taken = {r.get(key) for r in records for key in ("block", "lan")}
        used = _used_networks()
        free = [
            block
            for block in RANGE.subnets(new_prefix=24)
            if str(block) not in taken and not any(block.overlaps(u) for u in used)
        ]
        if len(free) < 2:
            raise LabError("no two free /24s left in 198.18.0.0/15 for a lab")
        preferred = [b for b in free if b.subnet_of(PREFERRED)]
        preferred = preferred if len(preferred) >= 2 else free
        block, lan = (preferred[i] for i in _two_of(len(preferred)))
        carriers = {r.get("carrier") for r in records}
        for _ in range(1000):
            start = CARRIER.network_address + (secrets.randbelow(CARRIER.num_addresses >> 8) << 8)
            carrier = ipaddress.IPv4Network(f"{start}/24")
            if str(carrier) not in carriers:
                break
        else:
            raise LabError("no free /24 left in 100.64.0.0/10 for a lab")
        record = {"tag": tag, "pid": os.getpid(), "start": _start_time(os.getpid())}
        blocks = {"block": str(block), "lan": str(lan), "carrier": str(carrier)}
        (RECORDS / f"{tag}.json").write_text(json.dumps({**record, **blocks}))
        return block, lan, carrier


def _two_of(n: int) -> tuple[int, int]:
    """Two different indexes below ``n`` (at least 2), at random."""
    first = secrets.randbelow(n)
    return first, (first + 1 + secrets.randbelow(n - 1)) % n


def _records() -> list[dict[str, Any]]:
    found = []
    for path in RECORDS.glob("hl*.json"):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text()))
    return found


def sweep() -> list[str]:
    """Remove the labs whose owning process is gone (killed before it could close them);
    the tags removed."""
    removed = []
    for record in _records():
        tag, pid = str(record.get("tag", "")), int(record.get("pid", 0))
        if not re.fullmatch(r"hl[0-9a-f]{6}", tag):
            continue
        if pid and _start_time(pid) == record.get("start") and _start_time(pid) is not None:
            continue  # its owner still runs
        names = [n.split()[0] for n in sh("ip", "netns", "list", check=False).splitlines() if n]
        _remove(tag, [n for n in names if n.startswith(f"{tag}-")], f"{tag}r0")
        if record.get("block"):
            sh("ip", "route", "del", str(record["block"]), "dev", f"{tag}r0", check=False)
        (RECORDS / f"{tag}.json").unlink(missing_ok=True)
        removed.append(tag)
    return removed


# -- the exit guard ----------------------------------------------------------------------------

_OPEN: set[Lab] = set()
_GUARDED = False


def _close_all() -> None:
    for lab in list(_OPEN):
        with contextlib.suppress(Exception):
            lab.close()


def _on_signal(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)  # unwinds: with-blocks and atexit close the labs


def _guard(lab: Lab) -> None:
    """Close ``lab`` at interpreter exit and on SIGTERM/SIGHUP (when nobody handles them)."""
    global _GUARDED
    _OPEN.add(lab)
    if _GUARDED:
        return
    _GUARDED = True
    atexit.register(_close_all)
    for number in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: atexit still closes
            if signal.getsignal(number) is signal.SIG_DFL:
                signal.signal(number, _on_signal)
