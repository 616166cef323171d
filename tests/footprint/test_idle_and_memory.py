"""Issue 19: an idle network of three uses next to no CPU, and each node little memory.

The network (``conftest.network3``) is started by the real controller, forked from its fork
server, and left alone: no traffic, no change. The goals are the issue's: at most 0.5 ms of CPU
a second per node at rest (nothing polls), at most 35 MiB resident and 15 MiB proportional
memory per mirror. The figures are printed (``-s``) whether they pass or not.
"""

from __future__ import annotations

import time

from tests.footprint.conftest import cpu_seconds, memory_mib

IDLE_SECONDS = 30.0
"""How long the network is left alone (the issue's 30 s)."""
SETTLE_SECONDS = 5.0
"""Time after convergence before measuring: the first exchanges between the nodes end."""
IDLE_GOAL_MS_PER_S = 0.5
RSS_GOAL_MIB = 35.0
PSS_GOAL_MIB = 15.0


def test_an_idle_network_of_three_uses_at_most_half_a_millisecond_a_second(
    network3: dict[str, int],
) -> None:
    time.sleep(SETTLE_SECONDS)
    before = {name: cpu_seconds(pid) for name, pid in network3.items()}
    began = time.monotonic()
    time.sleep(IDLE_SECONDS)
    spent = time.monotonic() - began
    used = {
        name: (cpu_seconds(pid) - before[name]) * 1000 / spent for name, pid in network3.items()
    }
    print("\nidle CPU, ms/s over", f"{spent:.1f} s:", {n: round(v, 3) for n, v in used.items()})
    over = {name: ms for name, ms in used.items() if ms > IDLE_GOAL_MS_PER_S}
    assert not over, f"nodes above {IDLE_GOAL_MS_PER_S} ms/s at rest: {over}"


def test_each_mirror_holds_at_most_35_mib_resident_and_15_mib_its_own(
    network3: dict[str, int],
) -> None:
    figures = {name: memory_mib(pid) for name, pid in network3.items()}
    print("\nmemory, MiB:", {n: {k: round(v, 1) for k, v in f.items()} for n, f in figures.items()})
    mirrors = {name: f for name, f in figures.items() if name != "registry"}
    assert all(f["Rss"] > 0 and f["Pss"] > 0 for f in figures.values())  # it was read
    over = {
        name: f for name, f in mirrors.items() if f["Rss"] > RSS_GOAL_MIB or f["Pss"] > PSS_GOAL_MIB
    }
    assert not over, f"mirrors above {RSS_GOAL_MIB:g} MiB RSS / {PSS_GOAL_MIB:g} MiB Pss: {over}"
