"""Changes in a node's folders (its config's ConfigMap volume, its certificate's Secret), from
inotify on the node's event loop (``asyncinotify``: the inotify descriptor is one more reader of
the loop). Nothing runs while nothing changes: no thread, no timer (``watchfiles``, which the
controller's ``hmctl up`` uses, keeps a thread that wakes every step to look at its stop event,
twice to twenty times a second). Stop a watch by cancelling its task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from asyncinotify import Inotify, Mask

WATCHED = (
    Mask.CREATE
    | Mask.DELETE
    | Mask.MODIFY
    | Mask.CLOSE_WRITE
    | Mask.MOVED_TO
    | Mask.MOVED_FROM
    | Mask.ATTRIB
)
"""What changes a folder's entries or a file in it (a kubelet's ``..data`` swap is a create
and a move; an editor's save a write, or a move over the old file)."""


async def changes(folders: Iterable[Path], debounce: float) -> AsyncIterator[None]:
    """Once per burst of changes in ``folders`` (their entries, not their sub-folders): when
    ``debounce`` seconds have passed without another change after the first. ``OSError`` when a
    folder cannot be watched (it does not exist, or no inotify watch is left)."""
    with Inotify() as inotify:
        for folder in folders:
            inotify.add_watch(folder, WATCHED)
        while True:
            await inotify.get()
            while True:  # the rest of the burst
                try:
                    async with asyncio.timeout(debounce):
                        await inotify.get()
                except TimeoutError:
                    break
            yield
