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

RANGE = ipaddress.IPv4Network("198.18.0.0/15")
"""Where every lab takes its /24 (RFC 2544: set aside for benchmarking, never routed)."""
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
    """One host of a lab: a namespace with one link to the internet."""

    lab: Lab
    name: str
    index: int
    namespace: str
    address: str
    gateway: str
    outer: str
    """The name of the host's link inside the internet namespace."""
    delay_ms: float | None = None
    jitter_ms: float = 0.0
    loss: float = 0.0
    forwarder: subprocess.Popen[str] | None = field(default=None, repr=False)

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
        _guard(self)
        try:
            self.block = _allocate(self.tag)
            self._make_internet()
        except BaseException:
            self.close()
            raise

    # -- the internet --------------------------------------------------------------------------

    def _address(self, index: int, offset: int) -> str:
        return str(self.block.network_address + 4 * index + offset)

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
    ) -> Host:
        """A new host ``name`` (lowercase letters, digits, dashes; at most 20). With
        ``delay_ms`` (even 0) its link is a TUN pair through a delay forwarder, whose delay and
        jitter ``set_link`` may change later; without, a veth pair. ``loss`` (0..1, per
        direction, resolution 0.001) applies to either."""
        if self.closed:
            raise LabError(f"lab {self.tag} is closed: make a new one")
        if not NAME.match(name):
            raise LabError(f"host name {name!r}: 1-20 of a-z, 0-9 and '-', not at either end")
        if name in self.hosts:
            raise LabError(f"lab {self.tag} already has a host {name!r}")
        if len(self.hosts) >= MAX_HOSTS:
            raise LabError(f"lab {self.tag} is full ({MAX_HOSTS} hosts)")
        default_delay, default_jitter, default_loss = self.defaults
        delay_ms = default_delay if delay_ms is None else delay_ms
        index = len(self.hosts) + 1
        host = Host(
            lab=self,
            name=name,
            index=index,
            namespace=f"{self.tag}-{name}",
            address=self._address(index, 2),
            gateway=self._address(index, 1),
            outer=f"{self.tag}h{index}",
            delay_ms=delay_ms,
            jitter_ms=default_jitter if jitter_ms is None else jitter_ms,
        )
        sh("ip", "netns", "add", host.namespace)
        self.hosts[name] = host  # removed by close() from here on, whatever fails next
        sh("ip", "-n", host.namespace, "link", "set", "lo", "up")
        if delay_ms is None:
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
                host.namespace,
            )
        else:
            self._tun_link(host)
        sh("ip", "-n", host.namespace, "addr", "add", f"{host.address}/30", "dev", "eth0")
        sh("ip", "-n", host.namespace, "link", "set", "eth0", "up")
        sh("ip", "-n", host.namespace, "route", "add", "default", "via", host.gateway)
        sh("ip", "-n", self.internet, "addr", "add", f"{host.gateway}/30", "dev", host.outer)
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
        self.set_link(name, loss=default_loss if loss is None else loss)
        return host

    def _tun_link(self, host: Host) -> None:
        """Join ``host`` by two TUN devices and a delay forwarder (``tests/lab/delay.py``)."""
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
        sh("ip", "link", "set", inside, "netns", host.namespace)
        sh("ip", "-n", host.namespace, "link", "set", inside, "name", "eth0")
        sh("ip", "link", "set", outside, "netns", self.internet)
        sh("ip", "-n", self.internet, "link", "set", outside, "name", host.outer)

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
        return [h.namespace for h in self.hosts.values()] + [self.internet]

    def close(self) -> None:
        """Stop everything the lab started and remove everything it made (idempotent)."""
        if self.closed:
            return
        self.closed = True
        _stop(self.processes)
        forwarders = [h.forwarder for h in self.hosts.values() if h.forwarder is not None]
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
        for host in self.hosts.values():
            link = "veth" if host.delay_ms is None else f"tun {host.delay_ms}±{host.jitter_ms} ms"
            yield (
                f"  {host.name:<12} {host.address:<15} ({link}, loss {host.loss:g})  "
                f"{host.shell_hint()}"
            )


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


def _allocate(tag: str) -> ipaddress.IPv4Network:
    """A /24 of 198.18.0.0/15 nothing on this machine uses, recorded as this lab's (under a
    lock, so labs made at once take different ones)."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    with (RECORDS / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep()
        taken = {r.get("block") for r in _records()}
        used = _used_networks()
        free = [
            block
            for block in RANGE.subnets(new_prefix=24)
            if str(block) not in taken and not any(block.overlaps(u) for u in used)
        ]
        if not free:
            raise LabError("no free /24 left in 198.18.0.0/15 for a lab")
        preferred = [b for b in free if b.subnet_of(PREFERRED)] or free
        block = preferred[secrets.randbelow(len(preferred))]
        record = {"tag": tag, "pid": os.getpid(), "start": _start_time(os.getpid())}
        (RECORDS / f"{tag}.json").write_text(json.dumps({**record, "block": str(block)}))
        return block


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
