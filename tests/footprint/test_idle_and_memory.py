"""Issue 19: an idle network of three uses next to no CPU, and each node little memory.

The network (``conftest.network3``) is started by the real controller, forked from its fork
server, and left alone: no traffic, no change. The issue's goals are at most 0.5 ms of CPU a
second per node at rest, at most 35 MiB resident and 15 MiB proportional memory per mirror.
Idle CPU is met: 0.18-0.19 ms/s a mirror and 0.22-0.24 the registry at load 3-9, against
1.1-1.3 / 2.9-3.7 with the 5 s zone feed heartbeat, the 5 s and 10 s looks and the 30 s
observations, and 7.9 ms/s before the push feeds. Memory is not met yet (54 / 25 MiB
a mirror, 90 / 66 MiB before the lazy features and the fork server). The tests hold what was
reached, with room for a busy machine, so that a poll loop or an eager import coming back fails
them; the figures and the goals' verdicts are printed (``-s``).
"""

from __future__ import annotations

import time

from tests.footprint.conftest import memory_mib
from tests.harness.proc import cpu_seconds

IDLE_SECONDS = 30.0
"""How long the network is left alone (the issue's 30 s)."""
SETTLE_SECONDS = 5.0
"""Time after convergence before measuring: the first exchanges between the nodes end."""
IDLE_GOAL_MS_PER_S = 0.5
RSS_GOAL_MIB = 35.0
PSS_GOAL_MIB = 15.0
IDLE_BOUND_MS_PER_S = 1.0
"""What the tests hold: the registry with the 5 s zone feed heartbeat back (2.9-3.7 ms/s) is
above it, a node polling every second (7.9) far above; every node measured at most 0.24 ms/s at
load 6-9, which leaves four times that for CI's three test processes beside it."""
RSS_BOUND_MIB = 62.0
PSS_BOUND_MIB = 33.0
"""What the tests hold (measured 53.6 / 25.4 MiB forked, with the fork server's warm-up; 61 / 40
spawned): an eager import of every feature and SQLAlchemy (90 / 66 MiB) is above."""


def test_an_idle_network_of_three_uses_next_to_no_cpu(
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
    met = all(ms <= IDLE_GOAL_MS_PER_S for ms in used.values())
    print(f"the issue's goal ({IDLE_GOAL_MS_PER_S} ms/s a node): {'met' if met else 'not met'}")
    over = {name: ms for name, ms in used.items() if ms > IDLE_BOUND_MS_PER_S}
    assert not over, f"nodes above {IDLE_BOUND_MS_PER_S} ms/s at rest: {over}"


def test_each_mirror_holds_little_memory(
    network3: dict[str, int],
) -> None:
    figures = {name: memory_mib(pid) for name, pid in network3.items()}
    print("\nmemory, MiB:", {n: {k: round(v, 1) for k, v in f.items()} for n, f in figures.items()})
    mirrors = {name: f for name, f in figures.items() if name != "registry"}
    assert all(f["Rss"] > 0 and f["Pss"] > 0 for f in figures.values())  # it was read
    met = all(f["Rss"] <= RSS_GOAL_MIB and f["Pss"] <= PSS_GOAL_MIB for f in mirrors.values())
    print(
        f"the issue's goal ({RSS_GOAL_MIB:g} / {PSS_GOAL_MIB:g} MiB): {'met' if met else 'not met'}"
    )
    over = {
        name: f
        for name, f in mirrors.items()
        if f["Rss"] > RSS_BOUND_MIB or f["Pss"] > PSS_BOUND_MIB
    }
    assert not over, f"mirrors above {RSS_BOUND_MIB:g} MiB RSS / {PSS_BOUND_MIB:g} MiB Pss: {over}"
