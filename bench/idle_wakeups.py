"""What wakes an idle node: every callback its event loop runs, by what it was, over a window.

A network of ``--nodes`` (a registry, the rest mirrors; the same manifests as
``bench/footprint.py``) is started by a real ``hmctl apply`` with the nodes spawned
(``HM_FORKSERVER=0``) and a ``sitecustomize`` first on their ``PYTHONPATH`` that wraps
``asyncio.events.Handle._run``: each callback is logged with the time it ran and what it was
(a task's step as its coroutine stack, ``Follower.run>Follower._follow>…``, else the
callback's name). After ``--settle`` seconds the next ``--idle`` seconds are summed per node:
each kind of callback, how often it ran and its CPU time in the callback (the loop's own
wake-up and the kernel's work come on top), then each node's wake times in half seconds with
the callback time in each, so that periodic wake-ups show as rows at a regular interval.

    .venv/bin/python bench/idle_wakeups.py                      # 3 nodes, 30 s from 5 s after
    .venv/bin/python bench/idle_wakeups.py --settle 150 --idle 60 --top 15
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from footprint import HMCTL, network_yaml

SITECUSTOMIZE = """
import os, time, asyncio.events as events

_out = os.environ["HM_WAKEUPS"]
_files = {}

def _file():
    f = _files.get(os.getpid())
    if f is None:
        f = _files[os.getpid()] = open(f"{_out}/loop.{os.getpid()}", "a", buffering=1)
    return f

def _where(coro):
    parts = []
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "ag_code", None)
        code = code or getattr(coro, "gi_code", None)
        if code is None:
            parts.append(type(coro).__name__)
            break
        parts.append(code.co_qualname)
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
                or getattr(coro, "gi_yieldfrom", None))
    return ">".join(parts)

_run = events.Handle._run

def _logged(self):
    callback = self._callback
    owner = getattr(callback, "__self__", None)
    try:
        if owner is not None and hasattr(owner, "get_coro"):
            what = "task " + _where(owner.get_coro())
        else:
            what = getattr(callback, "__module__", "") + "." + getattr(
                callback, "__qualname__", type(callback).__name__)
    except Exception as exc:
        what = f"? {exc!r}"
    began = time.thread_time()
    try:
        return _run(self)
    finally:
        used = time.thread_time() - began
        _file().write(f"{time.time():.3f} {used * 1e6:.0f} {what}\\n")

events.Handle._run = _logged
"""


def hmctl(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*HMCTL, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"hmctl {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def summary(lines: list[tuple[float, float, str]], top: int, began: float) -> None:
    per: dict[str, list[float]] = defaultdict(list)
    slots: dict[float, float] = defaultdict(float)
    for at, used, what in lines:
        per[what].append(used)
        slots[int((at - began) * 2) / 2] += used
    total = sum(sum(v) for v in per.values())
    print(f"    {len(lines)} callbacks, {total / 1000:.1f} ms in them")
    for what, each in sorted(per.items(), key=lambda kv: -sum(kv[1]))[:top]:
        print(f"    {sum(each) / 1000:8.2f} ms {len(each):5d}x  {what[:150]}")
    busy = [f"{at:.1f}s:{us / 1000:.1f}" for at, us in sorted(slots.items()) if us > 150]
    print("    wakes (s after the window began: ms):", " ".join(busy))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hm-bench-wakeups-") as tmp:
        root = Path(tmp)
        (root / "site").mkdir()
        (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        (root / "log").mkdir()
        (root / "m").mkdir()
        (root / "m" / "network.yaml").write_text(network_yaml(args.nodes))
        env = {**os.environ, "NO_COLOR": "1", "HM_FORKSERVER": "0"}
        env["HM_WAKEUPS"] = str(root / "log")
        env["PYTHONPATH"] = os.pathsep.join([str(root / "site"), env.get("PYTHONPATH", "")])
        state = ["--state", str(root / "state")]
        try:
            hmctl(env, *state, "apply", "-f", str(root / "m"), "--timeout", "120s")
            items = json.loads(hmctl(env, *state, "get", "nodes", "-o", "json"))["items"]
            names = {str(i["status"].get("pid")): i["metadata"]["name"] for i in items}
            time.sleep(args.settle)
            began = time.time()
            time.sleep(args.idle)
            ended = time.time()
        finally:
            hmctl(env, *state, "down")
        print(f"idle wake-ups over {args.idle:g} s from {args.settle:g} s after the apply")
        for log in sorted((root / "log").glob("loop.*")):
            lines = []
            for raw in log.read_text().splitlines():
                at, used, what = raw.split(" ", 2)
                if began <= float(at) < ended:
                    lines.append((float(at), float(used), what))
            if lines:
                pid = log.suffix[1:]
                print(f"\n  {names.get(pid, 'another process')} (pid {pid})")
                summary(lines, args.top, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
