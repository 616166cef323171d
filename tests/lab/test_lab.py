"""The lab itself: hosts reach one another through the internet namespace; a cut host is
unreachable until healed; a lossy link loses what it should; a delayed link delays; and
everything the lab made is gone after ``close()``, after a failing test, and after its process is
killed.

Timing: each test is bounded (timeouts on every wait), and only a lower bound on delay is
asserted (a slow machine can add latency, never remove it).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.lab import probe
from tests.lab.conftest import require_lab
from tests.lab.lab import RECORDS, REPO, Host, Lab, LabError, python_env

PORT = 7000


def echo(host: Host, port: int = PORT) -> subprocess.Popen[str]:
    """A UDP echo server in ``host``, ready when returned."""
    server = host.popen(
        [sys.executable, "-m", "tests.lab.probe", "echo", str(port)], env=python_env()
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    return server


def asks(source: Host, target: Host, port: int = PORT, tries: int = 3) -> bool:
    """Whether an echo round trip from ``source`` to ``target`` gets an answer."""
    done = source.run(
        [
            sys.executable,
            "-m",
            "tests.lab.probe",
            "ask",
            target.address,
            str(port),
            "--tries",
            str(tries),
        ],
        env=python_env(),
        timeout=30,
    )
    return done.returncode == 0


def leftovers(lab: Lab) -> list[str]:
    """What of ``lab`` is still on the machine: namespaces, root links, the route, its record."""
    found = [n for n in _lines("ip", "netns", "list") if n.startswith(lab.tag)]
    found += [line for line in _lines("ip", "-o", "link", "show") if lab.tag in line]
    found += [line for line in _lines("ip", "route", "show") if str(lab.block) in line]
    if (RECORDS / f"{lab.tag}.json").exists():
        found.append(f"record {lab.tag}.json")
    return found


def _lines(*argv: str) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.splitlines()


def test_hosts_reach_each_other_and_the_root_namespace(lab: Lab) -> None:
    a, b = lab.add_host("a"), lab.add_host("b")
    c = lab.add_host("c", delay_ms=0)  # a TUN link: the same reach as a veth
    for host in (a, b, c):
        echo(host)
    assert asks(a, b) and asks(b, c) and asks(c, a)
    assert all(probe.ask(h.address, PORT) is not None for h in (a, b, c))
    assert {a.address, b.address, c.address} <= {str(x) for x in lab.block.hosts()}
    # A host's link is its only way out: its routes go through the internet namespace.
    assert f"default via {a.gateway}" in a.run(["ip", "route"]).stdout


def test_a_cut_host_is_unreachable_until_healed(lab: Lab) -> None:
    a, b = lab.add_host("a"), lab.add_host("b")
    echo(a)
    echo(b)
    assert asks(a, b)
    lab.cut("b")
    assert not asks(a, b, tries=1)
    assert not asks(b, a, tries=1)
    assert probe.ask(b.address, PORT, timeout=0.5) is None
    assert asks(a, a)  # the rest of the lab is untouched
    lab.heal("b")
    assert asks(a, b) and asks(b, a)
    lab.heal("b")  # healing a healed host does nothing


def binomial_bounds(n: int, p: float, sigmas: float) -> tuple[int, int]:
    """Counts ``sigmas`` standard deviations either side of the mean of Binomial(n, p)."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return math.floor(mean - sigmas * sd), math.ceil(mean + sigmas * sd)


def test_a_lossy_link_loses_its_share(lab: Lab) -> None:
    sent, p = 2000, 0.10
    low, high = round(0.05 * sent), round(0.15 * sent)
    # 5%..15% of 2,000 is 100..300 lost: more than 7 standard deviations (13.4) from the mean
    # (200) either way, a chance below 1e-11 of a false failure.
    seven_low, seven_high = binomial_bounds(sent, p, 7)
    assert low <= seven_low and seven_high <= high
    host = lab.add_host("lossy", loss=p)
    counter = host.popen(
        [sys.executable, "-m", "tests.lab.probe", "count", str(PORT), "--idle", "1.5"],
        env=python_env(),
    )
    assert counter.stdout is not None
    assert counter.stdout.readline().strip() == "ready"
    probe.send(host.address, PORT, sent)
    received = int(counter.stdout.readline())
    lost = sent - received
    assert low <= lost <= high, f"{lost} of {sent} lost over a {p:.0%} loss link"
    # And back to no loss: set_link changes the rule in place.
    lab.set_link("lossy", loss=0.0)
    echo(host, PORT + 1)
    assert all(probe.ask(host.address, PORT + 1) is not None for _ in range(20))


def test_a_delayed_link_delays_each_direction(lab: Lab) -> None:
    host = lab.add_host("far", delay_ms=25)
    echo(host)
    rtts = [probe.ask(host.address, PORT, timeout=5) for _ in range(5)]
    assert all(r is not None and r >= 50 for r in rtts), rtts  # a lower bound only
    lab.set_link("far", delay_ms=60)
    rtt = probe.ask(host.address, PORT, timeout=5)
    assert rtt is not None and rtt >= 120, rtt
    with pytest.raises(LabError, match="veth link"):
        lab.set_link(lab.add_host("near").name, delay_ms=5)


def test_close_leaves_nothing_behind() -> None:
    require_lab()
    lab = Lab(delay_ms=1)
    lab.add_host("a")
    lab.add_host("b", loss=0.5)
    echo(lab.host("a"))
    lab.cut("b")
    assert leftovers(lab)
    lab.close()
    assert leftovers(lab) == []
    lab.close()  # idempotent
    assert leftovers(lab) == []
    with pytest.raises(LabError, match="closed"):
        lab.add_host("c")


def test_labs_at_once_do_not_collide(lab: Lab) -> None:
    with Lab() as other:
        assert other.tag != lab.tag and not other.block.overlaps(lab.block)
        a, b = lab.add_host("a"), other.add_host("a")
        echo(a)
        echo(b)
        assert asks(a, a) and asks(b, b)
        assert probe.ask(a.address, PORT) is not None
        assert probe.ask(b.address, PORT) is not None
    assert leftovers(other) == []


FAILING = """
    from pathlib import Path
    from tests.lab.conftest import lab  # noqa: F401

    def test_fails(lab):
        lab.add_host("a", delay_ms=5)
        lab.add_host("b", loss=0.1)
        Path({out!r}).write_text(lab.tag + " " + str(lab.block))
        assert False, "this test fails on purpose"
"""


def _gone(tag: str, block: str) -> list[str]:
    found = [n for n in _lines("ip", "netns", "list") if n.startswith(tag)]
    found += [line for line in _lines("ip", "-o", "link", "show") if tag in line]
    return found + [line for line in _lines("ip", "route", "show") if block in line]


def test_a_failing_test_still_cleans_up(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "tag"
    test = tmp_path / "test_fails.py"
    test.write_text(textwrap.dedent(FAILING.format(out=str(out))))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(test),
        ],
        cwd=REPO,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "this test fails on purpose" in done.stdout
    tag, block = out.read_text().split()
    assert _gone(tag, block) == []


HELD = """
import time
from tests.lab.lab import Lab
lab = Lab()
lab.add_host("a", delay_ms=5)
print(lab.tag, lab.block, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_owner_leaves_nothing_behind(lab: Lab, how: signal.Signals) -> None:
    """SIGTERM: the lab's own guard closes it. SIGKILL: nothing can run in the process, so the
    next lab made on the machine sweeps it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", HELD], cwd=REPO, env=python_env(), stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    tag, block = owner.stdout.readline().split()
    assert _gone(tag, block)
    owner.send_signal(how)
    owner.wait(timeout=30)
    if how == signal.SIGKILL:
        assert _gone(tag, block)  # left behind ...
        Lab().close()  # ... until the next lab sweeps it
    assert _gone(tag, block) == []
