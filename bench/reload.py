"""Adding a node to a running network: the other nodes reload their config in place (SIGHUP)
instead of being restarted. Side by side, on one host, with the real controller:

  reload    ``hmctl apply`` as it is: the other nodes take the new member live
  restart   the same with ``HM_RELOAD=off``: every other node is stopped and started again

For each, a network of ``--nodes`` nodes (default 5: a registry and mirrors, public and private
interfaces) is applied, then ``--rounds`` times a node is added (``add``) and removed again
(``remove``, ``--prune``). Each row is the wall time of that ``hmctl apply`` (from its start to
the network converged: every Node Ready, which is when ``hmctl apply`` returns), median and
worst of the rounds, how many of the old nodes kept their pid, and whether each old node's
private interface admitted the new node's key once the apply returned.

Run by hand, not by the tests::

    .venv/bin/python bench/reload.py                  # 5 nodes, 3 rounds, both modes
    .venv/bin/python bench/reload.py --nodes 8 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity, load_or_create_identity

HEADER = "apiVersion: hypermesh.online/v1alpha1\n"
NETWORK = "bench"
NEWCOMER = "extra"


def manifests(nodes: int, extra: bool) -> str:
    """A Network with its registry and ``nodes - 1`` mirrors (and the extra node when asked)."""
    docs = [
        f"{HEADER}kind: Network\nmetadata: {{name: {NETWORK}}}\n"
        f"spec: {{mode: private, registry: {{node: n1}}}}\n"
    ]
    names = [f"n{i}" for i in range(1, nodes + 1)] + ([NEWCOMER] if extra else [])
    for name in names:
        role = "registry" if name == "n1" else "mirror"
        docs.append(
            f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\nspec:\n  network: {NETWORK}\n"
            f'  listen: "127.0.0.1:0"\n  roles: [{role}]\n  interfaces: [public, private]\n'
        )
    return "---\n".join(docs)


@dataclass
class Mode:
    name: str
    env: dict[str, str]
    add: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)


class Network:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.state = root / "state"
        self.folder = root / "manifests"
        self.folder.mkdir(parents=True)
        self.env = {**os.environ, **env, "HM_STATE": str(self.state), "NO_COLOR": "1"}

    def hmctl(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hypermesh.cli.main", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"hmctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def apply(self, text: str, *flags: str) -> float:
        (self.folder / "net.yaml").write_text(text)
        started = time.perf_counter()
        self.hmctl("apply", "-f", str(self.folder), "--timeout", "120s", *flags)
        return time.perf_counter() - started

    def nodes(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.hmctl("get", "nodes", "-o", "json"))["items"]
        return {i["metadata"]["name"]: i["status"] for i in items}


async def _admits(node: dict[str, Any], key: Identity) -> bool:
    try:
        async with (
            asyncio.timeout(5),
            connect_h3(node["privateAddress"], expected_id=node["identity"], identity=key) as h3,
        ):
            status, _, _ = await h3.request("GET", "/status", body=b"")
    except Exception:  # refused in the handshake, or no answer: not admitted
        return False
    return status == 200


def run(mode: Mode, nodes: int, rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix=f"hm-reload-{mode.name}-"))
    network = Network(root, mode.env)
    try:
        network.apply(manifests(nodes, extra=False))
        for _ in range(rounds):
            before = network.nodes()
            key = load_or_create_identity(network.state / "nodes" / NEWCOMER)
            mode.add.append(network.apply(manifests(nodes, extra=True)))
            after = network.nodes()
            old = [name for name in before if name != NEWCOMER]
            mode.kept.append(sum(after[n]["pid"] == before[n]["pid"] for n in old))
            mode.admitted.append(sum(asyncio.run(_admits(after[n], key)) for n in old))
            mode.remove.append(network.apply(manifests(nodes, extra=False), "--prune"))
    finally:
        with_state = (network.state / "state.db").exists()
        if with_state:
            subprocess.run(
                [sys.executable, "-m", "hypermesh.cli.main", "down"],
                cwd=root,
                env=network.env,
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("reload", "restart"), default=None)
    args = parser.parse_args()
    modes = [Mode("reload", {"HM_RELOAD": "on"}), Mode("restart", {"HM_RELOAD": "off"})]
    modes = [m for m in modes if args.only in (None, m.name)]
    for mode in modes:
        run(mode, args.nodes, args.rounds)
    old = args.nodes
    print(f"adding a node to a {args.nodes}-node network ({args.rounds} rounds; median / worst)")
    print(f"{'mode':<8} {'add':>14} {'remove':>14} {'pids kept':>10} {'admitted':>9}")
    for m in modes:
        add = f"{statistics.median(m.add):.2f} / {max(m.add):.2f}s"
        remove = f"{statistics.median(m.remove):.2f} / {max(m.remove):.2f}s"
        kept = f"{min(m.kept)}/{old}"
        admitted = f"{min(m.admitted)}/{old}"
        print(f"{m.name:<8} {add:>14} {remove:>14} {kept:>10} {admitted:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
