"""Small file helpers shared by the node process, the transport and the drivers."""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never a part
    of one, even across a crash; the file gets ``mode`` whatever the umask says."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
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
