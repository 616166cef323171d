"""A node's messages, received and sent, in SQLite (``messages.db``, mode 0600)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypermesh.files import open_private_sqlite
from hypermesh.messaging.envelope import Message, Ref
from hypermesh.transport.identity import node_id_from_public_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id BLOB PRIMARY KEY,
    sender BLOB NOT NULL,
    sent_ms INTEGER NOT NULL,
    text BLOB NOT NULL,
    block_author BLOB NOT NULL,
    block_seq INTEGER NOT NULL,
    block_hash BLOB NOT NULL,
    receipt_seq INTEGER NOT NULL,
    receipt_hash BLOB NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id BLOB PRIMARY KEY,
    recipient BLOB NOT NULL,
    sent_at REAL NOT NULL,
    message_seq INTEGER NOT NULL,
    receipt_seq INTEGER,
    receipt_hash BLOB,
    ack_seq INTEGER
);
"""


class Mailbox:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, path: Path) -> Mailbox:
        return cls(open_private_sqlite(path, SCHEMA))

    def close(self) -> None:
        self._db.close()

    def seen(self, message_id: bytes) -> bool:
        return (
            self._db.execute("SELECT 1 FROM inbox WHERE id = ?", (message_id,)).fetchone()
            is not None
        )

    def receive(self, message: Message, receipt: Ref) -> dict[str, Any]:
        """Store ``message``, received with ``receipt``; returns it as ``inbox`` lists it."""
        self._db.execute(
            "INSERT INTO inbox VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message.id,
                message.sender,
                message.timestamp_ms,
                message.text,
                message.block.author,
                message.block.seq,
                message.block.hash,
                receipt.seq,
                receipt.hash,
                time.time(),
            ),
        )
        return _entry(
            (
                message.id,
                message.sender,
                message.timestamp_ms,
                message.text,
                message.block.seq,
                message.block.hash,
                receipt.seq,
                receipt.hash,
            )
        )

    def count(self) -> int:
        """Messages received so far."""
        return int(self._db.execute("SELECT count(*) FROM inbox").fetchone()[0])

    def sent(self, message_id: bytes, recipient: bytes, message_seq: int) -> None:
        self._db.execute(
            "INSERT INTO outbox (id, recipient, sent_at, message_seq) VALUES (?, ?, ?, ?)",
            (message_id, recipient, time.time(), message_seq),
        )

    def acknowledged(self, message_id: bytes, receipt: Ref, ack_seq: int) -> None:
        self._db.execute(
            "UPDATE outbox SET receipt_seq = ?, receipt_hash = ?, ack_seq = ? WHERE id = ?",
            (receipt.seq, receipt.hash, ack_seq, message_id),
        )

    def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, sender, sent_ms, text, block_seq, block_hash, receipt_seq, receipt_hash "
            "FROM inbox ORDER BY received_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_entry(r) for r in rows]


def _entry(r: Sequence[Any]) -> dict[str, Any]:
    """A received message as the inbox lists it (id, sender, time, text, the two blocks)."""
    return {
        "id": bytes(r[0]).hex(),
        "from": node_id_from_public_key(bytes(r[1])),
        "sentMs": r[2],
        "text": bytes(r[3]).decode("utf-8", "replace"),
        "messageBlock": {"seq": r[4], "hash": bytes(r[5]).hex()},
        "receiptBlock": {"seq": r[6], "hash": bytes(r[7]).hex()},
    }
