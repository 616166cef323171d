"""The live dashboard: how soon a change made with ``hmctl apply`` shows on an open page, what a
connected viewer costs the node, and what the page weighs.

A network of a registry and two mirrors is started by the real controller (``hmctl apply``) in
a temporary state; the registry's node serves the dashboard on its web listener, which
``hmctl dashboard`` names. Rows:

  apply->node   from the start of ``hmctl apply`` (one more TLD in the manifest) to the TLD in
                the registry's own API (``GET /registry/v1/tlds`` over HTTP/1.1, polled every
                20 ms): the baseline, when the node itself knows
  apply->page   from the same start to the TLD's row on the dashboard open in headless Chromium
                (polled every 20 ms over DevTools): what an operator sees
  node->page    the difference: the dashboard's own delay (sampler, SSE, the page's redraw)
  apply exit    when ``hmctl apply`` returned
  cpu/viewer    the registry node's CPU (``/proc/PID/stat``) over ``--window`` seconds with 0, 1
                and 5 viewers connected to ``/dashboard/events`` (raw SSE readers, not
                browsers, so only the node's cost is counted), per viewer
  weight        the page's bytes (and gzipped), and the first state event's

Run by hand, not by the tests::

    .venv/bin/python bench/dashboard.py               # 10 changes, 10 s CPU windows
    .venv/bin/python bench/dashboard.py --changes 5 --window 5
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness

import aiohttp
from tests.harness.chromium import Page, chromium
from tests.harness.proc import cpu_seconds

NETWORK = """apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: dashbench}
spec: {mode: private, registry: {node: registry}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: registry}
spec: {network: dashbench, listen: 127.0.0.1:0, roles: [registry], interfaces: [public, private]}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: alpha}
spec: {network: dashbench, listen: 127.0.0.1:0, roles: [mirror], interfaces: [public, private]}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: beta}
spec: {network: dashbench, listen: 127.0.0.1:0, roles: [mirror], interfaces: [public, private]}
"""

TLD = """---
apiVersion: hypermesh.online/v1alpha1
kind: TLD
metadata: {{name: {name}}}
spec: {{network: dashbench, owner: {{node: alpha}}}}
"""
POLL = 0.02


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


class Network:
    def __init__(self, root: Path) -> None:
        self.folder = root / "net"
        self.folder.mkdir()
        self.env = {**os.environ, "HM_STATE": str(root / "state"), "NO_COLOR": "1"}
        self.text = NETWORK

    def hmctl(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hypermesh.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"hmctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def apply(self, more: str = "") -> None:
        self.text += more
        (self.folder / "network.yaml").write_text(self.text)
        self.hmctl("apply", "-f", str(self.folder), "--timeout", "120s")

    def registry_pid(self) -> int:
        items = json.loads(self.hmctl("get", "nodes", "-o", "json"))["items"]
        return int(next(i for i in items if i["metadata"]["name"] == "registry")["status"]["pid"])


async def _until(check: Any, within: float = 300.0) -> float:
    for _ in range(int(within / POLL)):
        if await check():
            return time.monotonic()
        await asyncio.sleep(POLL)
    raise RuntimeError(f"not seen within {within:g} s")


async def one_change(net: Network, page: Page, web: str, name: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:

        async def known() -> bool:
            async with session.get(f"http://{web}/registry/v1/tlds") as got:
                items = (await got.json())["items"]
            return any(i["name"] == name for i in items)

        async def shown() -> bool:
            return bool(await page.evaluate(f"document.getElementById('tld-{name}') !== null"))

        started = time.monotonic()
        applying = asyncio.create_task(asyncio.to_thread(net.apply, TLD.format(name=name)))
        node_at, page_at = await asyncio.gather(_until(known), _until(shown))
        await applying
        exited = time.monotonic()
    return {
        "apply->node": node_at - started,
        "apply->page": page_at - started,
        "node->page": page_at - node_at,
        "apply exit": exited - started,
    }


async def viewers_cpu(web: str, pid: int, count: int, window: float) -> float:
    """The node's CPU seconds over ``window`` with ``count`` viewers reading its events."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        responses = [await session.get(f"http://{web}/dashboard/events") for _ in range(count)]

        async def read(response: aiohttp.ClientResponse) -> None:
            async for _ in response.content.iter_any():
                pass

        readers = [asyncio.create_task(read(r)) for r in responses]
        await asyncio.sleep(1.0)  # past the first view
        before = cpu_seconds(pid)
        await asyncio.sleep(window)
        used = cpu_seconds(pid) - before
        for task in readers:
            task.cancel()
        for response in responses:
            response.close()
        await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.sleep(1.0)  # the sampler stops once the last viewer is gone
    return used


async def weight(web: str) -> tuple[int, int, int]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{web}/dashboard/") as got:
            page = await got.read()
        async with session.get(f"http://{web}/dashboard/events") as events:
            text = b""
            async for piece in events.content.iter_any():
                text += piece
                if b"data: " in text and text.endswith(b"\n\n"):
                    break
    first = text[text.index(b"event: state") :]
    return len(page), len(gzip.compress(page)), len(first)


async def run(args: argparse.Namespace, net: Network, root: Path) -> None:
    url = net.hmctl("dashboard").strip()
    web = url.removeprefix("http://").removesuffix("/dashboard/")
    print(f"dashboard at {url}")
    rows: dict[str, list[float]] = {}
    async with chromium(root / "chromium") as page:
        await page.goto(url)
        await page.wait_for("document.getElementById('node-beta') !== null", 60)
        for i in range(args.changes):
            measured = await one_change(net, page, web, f"t{i}x")
            for key, value in measured.items():
                rows.setdefault(key, []).append(value * 1000)
            print("  change", i, " ".join(f"{k} {v * 1000:.0f} ms" for k, v in measured.items()))
    print(f"\n{'row':<14}{'p50 ms':>10}{'p99 ms':>10}   ({args.changes} changes)")
    for key, values in rows.items():
        print(f"{key:<14}{percentile(values, 50):>10.0f}{percentile(values, 99):>10.0f}")
    pid = net.registry_pid()
    base = await viewers_cpu(web, pid, 0, args.window)
    print(f"\n{'viewers':<10}{'node CPU %':>12}{'per viewer %':>14}   ({args.window:g} s windows)")
    print(f"{0:<10}{base / args.window * 100:>12.2f}{'':>14}")
    for count in (1, 5):
        used = await viewers_cpu(web, pid, count, args.window)
        per = (used - base) / count / args.window * 100
        print(f"{count:<10}{used / args.window * 100:>12.2f}{per:>14.2f}")
    size, zipped, first = await weight(web)
    print(f"\npage {size} bytes ({zipped} gzipped), first state event {first} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=10, help="TLDs applied one by one")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per CPU window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hm-dashbench-") as tmp:
        root = Path(tmp)
        net = Network(root)
        try:
            started = time.monotonic()
            net.apply()
            print(f"network up in {time.monotonic() - started:.1f} s")
            asyncio.run(run(args, net, root))
        finally:
            net.hmctl("down", timeout=120)


if __name__ == "__main__":
    main()
