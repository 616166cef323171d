"""A running stub: its listeners, and its status written to a file for ``hmctl resolver
status`` (``status.json``: what ``Resolver.status`` says, plus where it listens and since
when, rewritten every ``STATUS_EVERY`` seconds while anything changes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hypermesh.errors import HyperMeshError
from hypermesh.files import write_atomic
from hypermesh.resolver.listen import Listening, listen
from hypermesh.resolver.service import Resolver

STATUS_EVERY = 1.0
"""Seconds between writes of the status file."""
MAX_STATUS = 1 << 20
"""Bytes of a status file read."""


@contextlib.asynccontextmanager
async def running(resolver: Resolver, status_file: Path | None) -> AsyncIterator[Listening]:
    """The stub listening (``listen``) and its status kept in ``status_file`` until the
    block ends; the file is removed then."""
    bound = await listen(resolver)
    started = time.time()
    writer = None
    if status_file is not None:
        writer = asyncio.create_task(_keep_status(resolver, bound, status_file, started))
    try:
        yield bound
    finally:
        if writer is not None:
            writer.cancel()
            await asyncio.wait([writer])
        await bound.close()
        if status_file is not None:
            with contextlib.suppress(OSError):
                status_file.unlink()  # noqa: ASYNC240 - one small file, at exit


def status_of(resolver: Resolver, bound: Listening, started: float) -> dict[str, Any]:
    """The status file's body."""
    return {
        **resolver.status(),
        "listen": bound.address,
        "pid": os.getpid(),
        "startedAt": started,
        "updatedAt": time.time(),
    }


async def _keep_status(resolver: Resolver, bound: Listening, path: Path, started: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    last = None
    while True:
        body = status_of(resolver, bound, started)
        shown = {k: v for k, v in body.items() if k != "updatedAt"}
        if shown != last:
            write_atomic(path, json.dumps(body, indent=2, sort_keys=True) + "\n")
            last = shown
        await asyncio.sleep(STATUS_EVERY)


def read_status(path: Path) -> dict[str, Any]:
    """A status file as ``running`` wrote it; ``HyperMeshError`` saying why when it cannot
    be read (no stub running there, or not a status file)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_STATUS + 1)
    except FileNotFoundError:
        raise HyperMeshError(f"{path}: no resolver status (is the resolver running?)") from None
    except OSError as exc:
        raise HyperMeshError(f"{path}: cannot read the resolver status: {exc.strerror}") from None
    try:
        if len(raw) > MAX_STATUS:
            raise ValueError("too large")
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("counts"), dict):
            raise ValueError("not a status object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HyperMeshError(f"{path}: not a resolver status file: {exc}") from None
    return data
