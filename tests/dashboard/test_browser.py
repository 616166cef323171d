"""The dashboard in headless Chromium against a network the real controller started: the page
renders, a node added with ``hmctl apply`` appears on the open page by its server-sent events
(no reload), ``hmctl dashboard --serve`` merges the controller's view, and a screenshot is
kept (the test's tmp dir, copied to /tmp/hm-dashboard.png)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Hmctl
from tests.harness.chromium import Page, chromium

SCREENSHOT = Path("/tmp/hm-dashboard.png")
APPEAR_WITHIN = 120.0
"""Seconds from the start of ``hmctl apply`` to the new node on the page: the apply starts the
node, which publishes its record to the registry; the page hears of it within a second or so
after that. Generous, for a loaded machine; the delay is printed."""

NETWORK = """apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: dash}
spec:
  mode: private
  registry: {node: registry}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: registry}
spec: {network: dash, listen: 127.0.0.1:0, roles: [registry], interfaces: [public, private]}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: alpha}
spec: {network: dash, listen: 127.0.0.1:0, roles: [mirror], interfaces: [public, private]}
"""

BETA = """---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: beta}
spec: {network: dash, listen: 127.0.0.1:0, roles: [mirror], interfaces: [public, private]}
"""


def _apply(hmctl: Hmctl, folder: Path) -> None:
    result = hmctl("apply", "-f", str(folder), "--timeout", "90s")
    assert result.returncode == 0, result.stdout + result.stderr


def _row(name: str, text: str = "") -> str:
    """A JavaScript test: the nodes table has ``name``'s row (containing ``text``)."""
    found = f"document.getElementById('node-{name}')"
    return f"({found} !== null && {found}.textContent.includes('{text}'))"


async def _follow_an_apply(page: Page, url: str, hmctl: Hmctl, folder: Path) -> dict[str, float]:
    await page.goto(url)
    await page.wait_for(_row("alpha", "Ready"), 30)
    assert await page.evaluate("document.title") == "HyperMesh dashboard"
    assert "dash" in await page.evaluate("document.getElementById('title').textContent")
    assert await page.evaluate("document.getElementById('live').textContent") == "live"
    assert not await page.evaluate(_row("beta"))
    await page.evaluate("window.unreloaded = true")
    before = await page.evaluate("Number(document.body.dataset.updates)")
    (folder / "network.yaml").write_text(NETWORK + BETA)
    started = time.monotonic()
    applying = asyncio.create_task(asyncio.to_thread(_apply, hmctl, folder))
    appeared = await page.wait_for(_row("beta", "Ready"), APPEAR_WITHIN)
    await applying
    applied = time.monotonic() - started
    assert await page.evaluate("window.unreloaded === true")  # the same page, not reloaded
    assert await page.evaluate("Number(document.body.dataset.updates)") > before
    # (the recent events are the node's memory: a registry restarted by the apply starts
    # them afresh, so "node beta appeared" is there only when it was not restarted)
    return {"appeared": appeared, "applied": applied}


def test_a_node_added_by_apply_appears_on_the_open_page(hmctl: Hmctl, tmp_path: Path) -> None:
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "network.yaml").write_text(NETWORK)
    _apply(hmctl, folder)
    shown = hmctl("dashboard")
    assert shown.returncode == 0, shown.stderr
    url = shown.stdout.strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/")

    async def run() -> dict[str, float]:
        async with chromium(tmp_path / "chromium") as page:
            delays = await _follow_an_apply(page, url, hmctl, folder)
            (tmp_path / "dashboard.png").write_bytes(await page.screenshot())
            return delays

    delays = asyncio.run(run())
    print(
        f"beta on the page {delays['appeared']:.2f} s after `hmctl apply` started "
        f"(the apply took {delays['applied']:.2f} s)"
    )
    assert (tmp_path / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copyfile(tmp_path / "dashboard.png", SCREENSHOT)


def test_hmctl_dashboard_serve_merges_the_controllers_view(hmctl: Hmctl, tmp_path: Path) -> None:
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "network.yaml").write_text(NETWORK)
    _apply(hmctl, folder)
    server = subprocess.Popen(
        [sys.executable, "-m", "hypermesh.cli.main", "dashboard", "--serve"],
        env=hmctl.env,
        cwd=hmctl.cwd,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/")

        async def run() -> str:
            async with chromium(tmp_path / "chromium") as page:
                await page.goto(url)
                await page.wait_for(_row("registry", "Ready"), 30)
                await page.wait_for(_row("alpha", "Ready"), 30)
                # every local node's paths, as hmctl get paths asks them
                await page.wait_for("document.querySelector('[id^=\"path-alpha-\"]') !== null", 30)
                (tmp_path / "served.png").write_bytes(await page.screenshot())
                return str(await page.evaluate("document.getElementById('events').textContent"))

        events = asyncio.run(run())
        assert "Node/alpha" in events  # the controller's events, from the state store
    finally:
        server.terminate()
        server.wait(10)


def test_hmctl_dashboard_without_a_network_says_what_to_do(hmctl: Hmctl) -> None:
    result = hmctl("dashboard")
    assert result.returncode != 0 and "apply a network first" in result.stderr
