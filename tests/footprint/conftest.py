"""A network of three real nodes (a registry and two mirrors, public and private interfaces),
converged by a real ``hmctl apply`` and left running for the module's tests; and what /proc
says of a process's CPU and memory."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import HEADER, Hmctl, documents, node
from tests.harness.proc import proc_mib

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


def memory_mib(pid: int) -> dict[str, float]:
    """``Rss`` and ``Pss`` of ``pid`` from ``/proc/<pid>/smaps_rollup``, in MiB (0 when not
    read)."""
    return {name: proc_mib(pid, "smaps_rollup", name) or 0.0 for name in ("Rss", "Pss")}
