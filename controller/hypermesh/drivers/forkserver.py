"""A fork server for node processes: one process that has imported a node's common core, and
forks each node from it (as ``multiprocessing``'s forkserver and gunicorn's preload do).

A node started by ``python -m hypermesh.node`` imports its modules itself: about 0.3 s of CPU
and some 50 MiB of memory of its own, per node. Forked from a parent that imported them once,
a node starts with its code already loaded, and the pages of that code stay shared between the
parent and every node, copy-on-write (``gc.freeze`` keeps the collector from touching them).

The server is ``hypermesh.node.forkserver`` (under the node, so that starting it loads nothing
of the controller); each node it forks is a process of its own, in its own session, with its
own log, exactly as a plainly spawned one, and outlives the controller that asked for it.

``ForkServer`` is the controller's side: it starts the server on first use and falls back to
the plain spawn (``subprocess.Popen``) when the server cannot be had; ``HM_FORKSERVER=0``
turns it off.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from hypermesh.node.forkserver import READY, TITLE_ROOM
from hypermesh.node.lockfile import pid_alive

ENV = "HM_FORKSERVER"
"""``0`` turns the fork server off: every node is started by ``python -m hypermesh.node``."""


class Child(Protocol):
    """A started node process, as the driver tracks it (``subprocess.Popen`` is one)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        ...


class ForkServerError(Exception):
    """The fork server did not start or did not answer."""


# -- the controller's side ---------------------------------------------------------------------


class ForkedChild:
    """A node forked by the server: its exit code is the server's to tell."""

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self._server = server
        self._code: int | None = None

    def poll(self) -> int | None:
        """None while the node runs (asked of /proc, not of the server: no round trip while
        it runs); once it is gone, its exit code as the server collected it."""
        if self._code is None and not pid_alive(self.pid):
            self._code = self._server.poll(self.pid)
        return self._code


class ForkServer:
    """The controller's handle on its fork server (started on first use, one per driver)."""

    def __init__(self, python: str = sys.executable, *, timeout: float = 30.0) -> None:
        self.python = python
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._failed = False
        self._ready = False

    @staticmethod
    def wanted() -> bool:
        return os.environ.get(ENV, "1").strip().lower() not in ("0", "no", "false", "off")

    def prestart(self) -> None:
        """Start the server now without waiting for it (it imports while the controller does
        its other work), unless it runs, failed or is turned off."""
        if self._failed or not self.wanted() or self._process is not None:
            return
        try:
            self._launch()
        except OSError:
            self._failed = True

    def available(self) -> bool:
        """Whether nodes can be forked now (the server started, or starts now)."""
        if self._failed or not self.wanted():
            return False
        if self._process is not None and self._process.poll() is not None:
            self.close()  # it died (killed, say): a new one
        if self._ready and self._process is not None:
            return True
        try:
            if self._process is None:
                self._launch()
            if self._line() != READY:
                raise ForkServerError("the fork server did not start")
        except (OSError, ForkServerError):
            self._failed = True  # the plain spawn from now on
            self.close()
            return False
        self._ready = True
        return True

    def _launch(self) -> None:
        self._process = subprocess.Popen(
            [self.python, "-m", "hypermesh.node.forkserver", " " * TITLE_ROOM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the controller is not the server's
            close_fds=True,
        )
        atexit.register(self.close)

    def _line(self) -> bytes:
        process = self._process
        if process is None or process.stdout is None:
            raise ForkServerError("no fork server")
        ready, _, _ = select.select([process.stdout], [], [], self.timeout)
        line = process.stdout.readline() if ready else b""
        if not line:
            raise ForkServerError("the fork server did not answer")
        return line

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None:
            raise ForkServerError("no fork server")
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
        except OSError as exc:
            raise ForkServerError(f"the fork server is gone: {exc}") from exc
        answer = json.loads(self._line())
        if not isinstance(answer, dict) or "error" in answer:
            raise ForkServerError(f"the fork server failed: {answer}")
        return answer

    def spawn(self, config: Path, cwd: Path, log: Path) -> ForkedChild:
        """Fork a node running ``config`` (raises ``ForkServerError`` when that fails)."""
        if not self.available():
            raise ForkServerError("no fork server")
        request = {
            "op": "spawn",
            "config": str(config),
            "cwd": str(cwd),
            "log": str(log),
            "env": dict(os.environ),
        }
        pid = self._ask(request)["pid"]
        if not isinstance(pid, int) or pid <= 0:
            raise ForkServerError(f"the fork server answered no pid: {pid!r}")
        return ForkedChild(pid, self)

    def poll(self, pid: int) -> int | None:
        """The exit code of a node the server forked, None while it runs. Without a server to
        ask, a node no longer alive has exited with a code no one knows (-1)."""
        try:
            code = self._ask({"op": "poll", "pid": pid})["code"]
        except (ForkServerError, ValueError):
            return None if pid_alive(pid) else -1
        return code if isinstance(code, int) else None

    def close(self) -> None:
        """Stop the server (its nodes live on): close its stdin, wait a moment for it."""
        process, self._process, self._ready = self._process, None, False
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
