"""Small file helpers shared by the node process, the transport and the drivers."""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import stat
from pathlib import Path


class FileCheckError(ValueError):
    """A file that could be read but is not acceptable: larger than its bound, or a private
    file that group or others may read. The message says what, not which file: callers name it."""


def read_bounded(
    path: Path | str, limit: int, *, private: bool = False, follow: bool = True
) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them (``FileCheckError`` when there are
    more). ``private``: the file must be readable by its owner alone (a key), checked on the
    open file. ``follow=False`` refuses a symbolic link. ``OSError`` when it cannot be read."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if private and mode & 0o077:
            raise FileCheckError(
                f"permissions {mode:04o} are too open; the private key must not be readable "
                f"by group or others (chmod 600 {path})"
            )
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileCheckError(f"larger than {limit} bytes")
    return data


def write_atomic(path: Path, text: str, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never a part
    of one, even across a crash of the process; the file gets ``mode`` whatever the umask says.
    ``durable``: synced before the rename, so that this holds across a crash of the machine
    too; without it (a file derived from others and written anew when lost) no write waits for
    the disk, and after a power loss the file may be empty or partly written."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def open_private_sqlite(
    path: Path, schema: str, *, synchronous: str | None = None
) -> sqlite3.Connection:
    """Open (creating it with mode 0600 first, so no other user ever reads it) the SQLite file
    at ``path`` in WAL mode, autocommit, usable from a worker thread, with ``schema`` applied.
    ``synchronous`` sets the pragma (``FULL`` for what must survive a crash)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    if synchronous is not None:
        db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(schema)
    return db
