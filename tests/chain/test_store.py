"""The chain on disk: appends durable before they are shown, group commit, redaction, a
damaged file refused, and `kill -9` during appends never leading to a second block at a
height already published."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hypermesh.chain.block import Block
from hypermesh.chain.merkle import verify_consistency, verify_inclusion
from hypermesh.chain.store import ChainError, ChainStore, Entry, GroupAppender
from hypermesh.transport.identity import Identity, load_or_create_identity

KEY = Identity.generate()


def test_appends_link_up_and_prove_themselves(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", KEY)
    assert (tmp_path / "chain.db").stat().st_mode & 0o777 == 0o600
    made = [store.append(1, f"entry {i}".encode()) for i in range(10)]
    assert store.size == 10 and store.head == made[-1]
    for i, block in enumerate(made):
        assert block.seq == i
        assert block.tree_root == store.root(i)  # each block signs the head before it
        proof = store.inclusion_proof(i)
        assert verify_inclusion(block.leaf, i, 10, proof, store.root())
        assert store.payload(block) == f"entry {i}".encode()
    assert verify_consistency(3, 10, store.root(3), store.root(), store.consistency_proof(3))
    store.close()

    again = ChainStore.open(tmp_path / "chain.db", KEY)
    assert again.size == 10 and again.root() == store.root() and again.head == made[-1]
    assert again.append(1, b"next").prev == made[-1].hash
    again.close()


def test_group_commit_and_concurrent_appends(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", KEY)
    batch = store.append_many([Entry(1, bytes([i])) for i in range(5)])
    assert [b.seq for b in batch] == [0, 1, 2, 3, 4]

    async def many() -> list[Block]:
        appender = GroupAppender(store)
        return await asyncio.gather(*(appender.append(1, bytes([i])) for i in range(50)))

    blocks = asyncio.run(many())
    assert sorted(b.seq for b in blocks) == list(range(5, 55))
    assert store.size == 55
    store.close()
    assert ChainStore.open(tmp_path / "chain.db", KEY).size == 55


def test_redacted_payloads_leave_a_chain_that_verifies(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", KEY)
    secret = store.append(1, b"a secret")
    store.append(1, b"public")
    assert store.redact(0)
    assert store.payload(secret) is None
    store.close()
    reopened = ChainStore.open(tmp_path / "chain.db", KEY)
    assert reopened.size == 2 and reopened.block(0).payload_size == len(b"a secret")


def test_a_damaged_or_foreign_chain_is_refused(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", KEY)
    for i in range(3):
        store.append(1, bytes([i]))
    store.close()
    with pytest.raises(ChainError, match="another author"):
        ChainStore.open(tmp_path / "chain.db", Identity.generate())
    db = sqlite3.connect(tmp_path / "chain.db")
    (wire,) = db.execute("SELECT wire FROM blocks WHERE seq = 1").fetchone()
    db.execute("UPDATE blocks SET wire = ? WHERE seq = 1", (wire[:-1] + bytes([wire[-1] ^ 1]),))
    db.commit()
    db.close()
    with pytest.raises(ChainError, match="damaged at block 1"):
        ChainStore.open(tmp_path / "chain.db", KEY)


WRITER = """
import sys
from pathlib import Path
from hypermesh.chain.store import ChainStore
from hypermesh.transport.identity import load_or_create_identity
folder = Path(sys.argv[1])
store = ChainStore.open(folder / "chain.db", load_or_create_identity(folder))
while True:
    block = store.append(1, b"x" * 100)
    print(block.seq, block.hash.hex(), flush=True)  # published only once durable
"""


def test_kill_9_during_appends_never_forks_the_chain(tmp_path: Path) -> None:
    identity = load_or_create_identity(tmp_path)
    published: dict[int, str] = {}
    for round_ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert writer.stdout is not None
        deadline = time.monotonic() + 20
        seen = 0
        while seen < 30 + round_ * 7 and time.monotonic() < deadline:
            line = writer.stdout.readline().decode().split()
            if line:
                published[int(line[0])] = line[1]
                seen += 1
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)
        for line in writer.stdout.read().decode().splitlines():  # printed before the kill
            seq, digest = line.split()
            published[int(seq)] = digest
        store = ChainStore.open(tmp_path / "chain.db", identity)
        held = {b.seq: b.hash.hex() for b in store.blocks()}
        # Everything published is there, unchanged: no block was signed twice at a height.
        assert all(held.get(seq) == digest for seq, digest in published.items())
        assert store.size >= max(published) + 1
        store.close()
