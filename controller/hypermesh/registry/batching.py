"""Node records published at about the same moment are stored together: one transaction and one
signing pass (``Directory.publish_many``) for every record whose request is handled in the same
turn of the event loop — group commit, as databases do it. A lone record waits for nothing: the
batch is flushed at the next turn of the loop, not after a timer. Under load, the requests that
arrive while one batch is stored (on the registry's writer thread, ``run``) make the next batch,
so a registry keeps up with many updates a second at the cost of one signing and one commit per
batch. Each request gets its own outcome: its record stored, or the error ``publish`` would
have raised for it alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hypermesh.registry.errors import RegistryError
from hypermesh.transport.noderecord import NodeRecord

Outcomes = list[NodeRecord | RegistryError]
PublishMany = Callable[[Sequence[Any]], Outcomes]
Run = Callable[[PublishMany, Sequence[Any]], Awaitable[Outcomes]]
"""How a batch is stored: ``publish_many(batch)`` run somewhere (the registry's writer)."""

MAX_BATCH = 500
"""Records in one batch at most (a larger queue is flushed in several)."""


async def _here(publish_many: PublishMany, batch: Sequence[Any]) -> Outcomes:
    return publish_many(batch)


class PublishBatcher:
    """Queues node records and stores each turn's queue with one ``publish_many`` call, run by
    ``run`` (default: on the event loop itself)."""

    def __init__(
        self, publish_many: PublishMany, most: int = MAX_BATCH, *, run: Run = _here
    ) -> None:
        self.publish_many = publish_many
        self.most = most
        self.run = run
        self.pending: list[tuple[Any, asyncio.Future[NodeRecord | RegistryError]]] = []
        self.batches = 0
        """How many batches were stored (for tests and metrics)."""
        self._scheduled = False
        self._task: asyncio.Task[None] | None = None

    async def publish(self, signed: Any) -> NodeRecord:
        """Store ``signed`` with the others of this turn; its record, or its ``RegistryError``."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[NodeRecord | RegistryError] = loop.create_future()
        self.pending.append((signed, outcome))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        result = await outcome
        if isinstance(result, RegistryError):
            raise result
        return result

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[: self.most], self.pending[self.most :]
                try:
                    outcomes = await self.run(self.publish_many, [signed for signed, _ in batch])
                except Exception as exc:  # the database failed: every request of the batch hears it
                    for _, waiting in batch:
                        if not waiting.done():
                            waiting.set_exception(exc)
                    continue
                self.batches += 1
                for (_, waiting), result in zip(batch, outcomes, strict=True):
                    if not waiting.done():
                        waiting.set_result(result)
        finally:
            self._scheduled = False
