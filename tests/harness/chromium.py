"""Headless Chromium driven over the DevTools protocol, for pages that must be watched while
they run (a page updated by server-sent events): open a URL, evaluate JavaScript in it, wait
for a condition, take a screenshot. The protocol's WebSocket is aiohttp's client.

A missing Chromium fails the test with the command that installs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

START_TIMEOUT = 30.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1280,1000",
)


def program() -> str:
    """The Chromium binary; fails the test when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is missing: apt-get install chromium (.ci/run does)")
    return found


def dump_dom(url: str, profile: Path, timeout: float = 90.0) -> str:
    """The DOM of ``url`` once loaded, as headless Chromium prints it (``--dump-dom``), with a
    profile of its own in ``profile``."""
    flags = [f for f in FLAGS if not f.startswith(("--remote-debugging", "--window-size"))]
    done = subprocess.run(
        [program(), *flags, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.stdout


class Page:
    """One page of a running Chromium, over its DevTools WebSocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command and its result (events in between are skipped)."""
        ident = next(self._ids)
        await self.socket.send_json({"id": ident, "method": method, "params": params})
        async with asyncio.timeout(START_TIMEOUT):
            async for message in self.socket:
                data = json.loads(message.data)
                if data.get("id") == ident:
                    if "error" in data:
                        raise RuntimeError(f"{method}: {data['error']}")
                    result: dict[str, Any] = data.get("result", {})
                    return result
        raise RuntimeError(f"{method}: the DevTools socket closed")

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page."""
        found = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return found.get("result", {}).get("value")

    async def wait_for(self, expression: str, within: float, every: float = 0.05) -> float:
        """Seconds until ``expression`` is truthy in the page; fails the test past ``within``."""
        started = time.monotonic()
        for _ in range(int(within / every) + 1):
            if await self.evaluate(expression):
                return time.monotonic() - started
            if time.monotonic() - started > within:
                break
            await asyncio.sleep(every)
        pytest.fail(f"the page never had {expression} within {within} s")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", START_TIMEOUT)

    async def screenshot(self) -> bytes:
        """The page as a PNG image."""
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """A headless Chromium with profile ``profile``, and its first page."""
    process = await asyncio.create_subprocess_exec(
        program(),
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[bytes] | None = None
    try:
        assert process.stderr is not None
        async with asyncio.timeout(START_TIMEOUT):
            port = await _devtools_port(process.stderr)
        drain = asyncio.create_task(process.stderr.read())  # keep its pipe from filling up
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as listed:
                targets = await listed.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(url, max_msg_size=64 * 1024 * 1024) as socket:
                page = Page(socket)
                await page.call("Page.enable")
                yield page
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        if drain is not None:
            drain.cancel()


async def _devtools_port(stderr: asyncio.StreamReader) -> int:
    """The port Chromium's DevTools listen on, from the line it prints on start."""
    while line := (await stderr.readline()).decode(errors="replace"):
        if "DevTools listening on ws://" in line:
            return int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    raise RuntimeError("chromium ended before it started its DevTools")
