"""A service run on an event loop of its own in a daemon thread, so that blocking clients
(dnspython's sync API, kdig or curl in a subprocess) can use it from the test's thread.

A subclass says what to open in ``open`` (on the thread's loop, registering what must be closed
on the exit stack); ``start_serving`` waits for it, bounded, and raises what it raised (a
subclass's ``start`` calls it and returns what its tests use); ``stop`` closes the stack and
joins the thread, bounded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


class LoopThread:
    """See the module's docstring; ``name`` says what failed to start in the error."""

    def __init__(self, name: str, timeout: float = 10.0) -> None:
        self.name, self.timeout = name, timeout
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        """Open the service on the thread's loop (a subclass's part)."""
        raise NotImplementedError

    def start_serving(self) -> None:
        self._thread.start()
        if not self._ready.wait(self.timeout):
            raise TimeoutError(f"{self.name} did not start within {self.timeout:g} s")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self.timeout)

    def call(self, function: Callable[[], object]) -> None:
        """Run ``function()`` on the service's loop (to look at it safely)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(function)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            await self.open(stack)
            self._ready.set()
            await self._stop.wait()
