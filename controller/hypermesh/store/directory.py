"""The state directory: made if missing, and proven writable before anything is put in it.

Whatever stands in the way (a file where a folder should be, a read-only file system, an
immutable folder, missing permissions) is reported as a ``StateError`` naming the directory and
the reason, never as a traceback from the first write that happens to fail. The proof is a real
write (a file created and removed): permission bits say nothing to root, and nothing about a
read-only mount or ``chattr +i``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from hypermesh.errors import StateError

__all__ = ["require_writable"]

_HINT = "choose another with --state or HM_STATE"


def require_writable(directory: Path, what: str = "state directory") -> None:
    """Make ``directory`` (and its parents) if missing and check that files can be written in
    it; ``StateError`` saying what is wrong otherwise."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateError(f"{what} {directory} is a file, not a directory; {_HINT}") from None
    except NotADirectoryError:
        blocker = _file_in_the_way(directory)
        raise StateError(
            f"{what} {directory} cannot be made: {blocker} is a file, not a directory; {_HINT}"
        ) from None
    except OSError as exc:
        raise StateError(f"{what} {directory} cannot be made: {_why(exc)}; {_HINT}") from None
    if not directory.is_dir():
        raise StateError(f"{what} {directory} is not a directory; {_HINT}")
    probe = directory / f".write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise StateError(f"{what} {directory} is not writable: {_why(exc)}; {_HINT}") from None


def _file_in_the_way(directory: Path) -> Path:
    """The nearest ancestor of ``directory`` that exists and is not a directory."""
    for parent in (directory, *directory.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return directory


def _why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "it is on a read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({exc.strerror})"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)
