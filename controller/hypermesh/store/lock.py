"""An exclusive lock on a state directory, so two applies cannot interleave.

An ``flock`` on ``<state>/lock``: the kernel drops it when the holder dies, even by ``kill -9``,
so a crashed apply never leaves a stale lock. The file also says who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from hypermesh.errors import LockHeldError, StateError
from hypermesh.store.directory import require_writable
from hypermesh.timefmt import rfc3339


class StateLock:
    """Hold it with ``with StateLock(state_dir, "hmctl apply"):``."""

    def __init__(self, state_dir: Path, purpose: str) -> None:
        self.path = state_dir / "lock"
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        require_writable(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open the state lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeldError(self._held_message()) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.purpose,
            "argv": sys.argv,
            "since": rfc3339(datetime.now(UTC)),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict[str, object] | None:
        """Who holds the lock now, as written in the lock file (None if unreadable)."""
        try:
            data = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _held_message(self) -> str:
        holder = self.holder()
        where = str(self.path.parent)
        if not holder:
            return f"state {where} is locked by another hmctl"
        return (
            f"state {where} is locked by {holder.get('command', 'hmctl')} "
            f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}); "
            "wait for it to finish, or stop it (hmctl down stops a running controller)"
        )

    def __enter__(self) -> StateLock:
        if self._fd is None:  # not acquired already
            self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
