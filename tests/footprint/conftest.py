"""A network of three real nodes (a registry and two mirrors, public and private interfaces),
converged by a real ``hmctl apply`` and left running for the module's tests; and what /proc
says of a process's CPU and memory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HEADER, Hmctl, documents, node

NODES = ("registry", "alpha", "beta")


def three_nodes() -> str:
    network = (
        f"{HEADER}kind: Network\nmetadata: {{name: demo}}\n"
        "spec: {mode: private, registry: {node: registry}}\n"
    )
    return documents(
        network,
        *(
            node(name, roles="[registry]" if name == "registry" else "[mirror]",
                 interfaces="[public, private]")
            for name in NODES
        ),
    )  # fmt: skip


@pytest.fixture(scope="module")
def network3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """The pid of each node of a converged network of three (forked by the fork server)."""
    root = tmp_path_factory.mktemp("footprint")
    hmctl = Hmctl(root / "state", root)
    hmctl.env.pop("HM_FORKSERVER", None)
    (root / "network.yaml").write_text(three_nodes())
    try:
        applied = hmctl("apply", "-f", str(root / "network.yaml"), "--timeout", "120s")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        got = hmctl("get", "nodes", "-o", "json")
        assert got.returncode == 0, got.stderr
        pids = {i["metadata"]["name"]: i["status"]["pid"] for i in json.loads(got.stdout)["items"]}
        assert set(pids) == set(NODES)
        yield pids
    finally:
        hmctl("down", timeout=120)


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` has used, every thread's, in seconds: from ``/proc/<pid>/task/*/
    schedstat`` (nanoseconds), or ``/proc/<pid>/stat`` (clock ticks) where that is missing."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    """``Rss`` and ``Pss`` of ``pid`` from ``/proc/<pid>/smaps_rollup``, in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            found[name] = int(rest.split()[0]) / 1024
    return found
