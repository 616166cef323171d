"""The registry's one writer: a thread of its own that runs every call the node makes on the
registry's database, so that a write (its commit, an fsync on SQLite; a round trip to
PostgreSQL) and the zone signing around it never hold the node's event loop.

One thread, not a pool: the registry's calls run one after another in the order they were
asked, as they did on the loop, so its in-memory state (signed zones by serial, revocations)
needs no lock of its own and writers never wait on each other in the database. The event loop
awaits ``Worker.run`` and goes on serving meanwhile.

``inline=True`` runs each call on the caller's thread instead: the old behaviour, kept to
measure against (``bench/registry_loop.py``) and for code without a loop.

Python's interpreter lock still passes between the loop and the writer thread: while the
writer computes (signing, diffing a zone), the loop waits at most the interpreter's switch
interval (``sys.getswitchinterval``) before it runs again. ``SWITCH_INTERVAL`` is what the
registry sets when its writer starts, so that the loop waits at most about that long.

The other thing that holds the lock for long is the cyclic garbage collector: a full
collection, set off by the writer's allocations, walks every object of the process (a signed
zone of 10,000 record sets is a few hundred thousand) while both threads wait; measured, 57 ms
with a zone of 1,000. When the writer starts, the objects made so far (the node's modules, the
zones loaded at start) are moved out of the collector's reach (``gc.freeze``, as servers that
preload do; objects whose last reference goes are still freed), so a full collection walks
only what was made since. That is done once a process (a test process opens many
registries: garbage in cycles that is frozen is never collected).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

_T = TypeVar("_T")
_P = ParamSpec("_P")

SWITCH_INTERVAL = 0.0005
"""Seconds the interpreter lets one thread run before another may take the lock (Python's
default is 0.005): at most this long the loop waits while the writer signs a zone."""
_frozen = False
"""Whether a writer of this process froze the objects made before it (``gc.freeze``)."""


class Worker:
    """Runs the registry's calls, one at a time, on a thread of its own (``inline``: on the
    caller's)."""

    def __init__(
        self,
        *,
        inline: bool = False,
        switch_interval: float | None = SWITCH_INTERVAL,
        freeze: bool = True,
    ) -> None:
        self.inline = inline
        self.switch_interval = switch_interval
        self.freeze = freeze
        """Whether the writer's start freezes the objects made so far (``gc.freeze``)."""
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.thread_id: int | None = None
        """The writer thread's ident, once it started."""

    def _start(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                if self.switch_interval is not None:
                    sys.setswitchinterval(min(sys.getswitchinterval(), self.switch_interval))
                _freeze_once(self.freeze)
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="hm-registry", initializer=self._named
                )
            return self._executor

    def _named(self) -> None:
        self.thread_id = threading.get_ident()

    def on_writer(self) -> bool:
        """Whether the caller runs on the writer thread (or the worker is inline)."""
        return self.inline or threading.get_ident() == self.thread_id

    async def run(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``call(*args, **kwargs)`` on the writer thread; its result or its exception."""
        if self.inline:
            return call(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._start(), functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        """Wait for the calls under way, then stop the thread (a later ``run`` starts one)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def _freeze_once(wanted: bool) -> None:
    global _frozen
    if wanted and not _frozen:
        _frozen = True
        gc.freeze()
