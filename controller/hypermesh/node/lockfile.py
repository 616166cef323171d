"""One process per node: an ``flock`` on ``<node_dir>/node.lock`` held for the node's life.

Whether a node runs is a question the kernel answers: the lock dies with the process, so a
crash leaves nothing stale to trust. The holder writes its pid into the file. Probes take a
*shared* lock for an instant: probes never conflict with each other, only with the node's
exclusive lock (which is why the node retries for a moment before giving up).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from hypermesh.errors import HyperMeshError

LOCK_FILE = "node.lock"
ACQUIRE_TIMEOUT = 2.0
"""How long a starting node waits for a probe to let go of the lock."""
_PID_WAIT = 0.5
"""How long a probe waits for a node that has just taken the lock to write its pid."""


class AlreadyRunning(HyperMeshError):
    """Another live process holds the node's lock."""

    def __init__(self, node_dir: Path, pid: int | None) -> None:
        self.pid = pid
        super().__init__(f"{node_dir / LOCK_FILE} is held by pid {pid}")


class NodeLock:
    """The exclusive lock of a running node; released by ``release`` or by process exit."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, node_dir: Path, *, timeout: float = ACQUIRE_TIMEOUT) -> NodeLock:
        """Take the lock (retrying up to ``timeout`` s) and write our pid into it.

        Raises ``AlreadyRunning`` (with the holder's pid) when it stays held.
        """
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = node_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pid = _read_pid(fd)
                    os.close(fd)
                    raise AlreadyRunning(node_dir, pid) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Let go of the lock (idempotent). The pid stays in the file; it means nothing unlocked."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def running_pid(node_dir: Path) -> int | None:
    """The pid of the live node process holding ``node_dir``'s lock, or None if none does."""
    try:
        fd = os.open(node_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_pid(fd, node_dir / LOCK_FILE)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder_pid(fd: int, path: Path) -> int:
    """The pid in a locked file. A node writes it just after locking, so a probe that lands in
    between sees an empty file or the previous holder's pid: wait briefly for a live one."""
    deadline = time.monotonic() + _PID_WAIT
    pid = _read_pid(fd)
    while time.monotonic() < deadline:
        if pid is not None and pid_alive(pid):
            return pid
        time.sleep(0.005)
        pid = _read_pid(fd)
    if pid is None:
        raise HyperMeshError(f"{path} is locked but holds no pid")
    return pid


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    return None


def pid_alive(pid: object) -> bool:
    """True while ``pid`` names a running process: the one answer the node, the drivers and the
    CLI share. Anything but a positive int is no process. A zombie (dead, its exit status not yet
    collected by its parent, as a node stopped by the ``hmctl`` that started it is for a moment)
    does not count: it serves nothing and a signal to it does nothing. A process of another user
    counts."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signalable(pid)
    return stat.rsplit(") ", 1)[-1][:1] not in ("Z", "X")


def _signalable(pid: int) -> bool:
    """Whether ``pid`` exists, asked of the kernel with signal 0 (when /proc cannot say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
