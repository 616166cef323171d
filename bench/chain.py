"""The node's chain (``hypermesh.chain``): durable appends, verification of a foreign chain and
Merkle proofs at a million blocks, each next to its floor: the same work with none of our code
around it.

Rows, in one run (``--count`` appends per append and group row):

``append floor``
    per append: a 160-byte header in block v1's layout (with the 100-byte payload's SHA-256),
    Ed25519-signed with cryptography's ``Ed25519PrivateKey``, SHA-256 of header + signature,
    and one row INSERTed in its own transaction with ChainStore's durability (WAL,
    ``synchronous=FULL``) into a fresh SQLite file: what one durable append costs at the least
``append floor, store's SQL``
    the same loop, its rows sent with ChainStore's own schema and statements (two tables, the
    block hash's unique index, the payload keyed by its hash; ``BEGIN IMMEDIATE``): for
    information, it splits the gap below into the SQL's share and our Python's
``append ChainStore.append``
    the real store, one commit per block, into a fresh chain file; goal: >= 0.7 x the floor
``group floor 100/commit``, ``group append_many(100)``
    the same two, 100 appends per transaction (for information)
``group floor same batches``, ``group GroupAppender(64)``
    64 coroutines appending at once through ``GroupAppender`` (what queues during a commit
    goes into the next; the mean batch is shown), and the bare loop committing the very batch
    sizes it made (for information)
``verify raw verify``
    cryptography's ``Ed25519PublicKey.verify`` over the signed messages of a chain's blocks,
    the key loaded once: the floor. ``raw + key load``: ``from_public_bytes`` on every call.
    ``verify_signature``: ``transport.identity.verify_signature``, the strict wrapper (node ID
    decoded, weak keys and non-canonical S refused). ``Block.from_wire``: decoding alone
``verify verify_chain``
    ``verify_chain`` over ``(Block.from_wire(wire), payload)`` for every block of a chain of
    ``--verify-blocks`` by another identity: decoding, signatures, links, the tree head each
    block carries, every payload; goal: >= 0.7 x raw verify
``proofs``
    a ``MerkleTree`` of ``--proof-leaves`` leaf hashes: build time and memory, then the median
    and 99th-percentile time of ``inclusion_proof`` (random leaves of the whole tree),
    ``consistency_proof`` (random old < new), ``root(n)`` (random n) and of verifying each
    proof (``--proof-calls`` each), with proof sizes in hashes and bytes

Durable rows alternate in ``ROUNDS`` chunks (floor, then ours), so drift in the disk's speed
hits both alike; CPU-bound rows take the best of ``ROUNDS`` passes. Every loop is bounded by
``--count``, ``--verify-blocks`` or ``--proof-calls``. SQLite files go to a temporary folder
under ``--tmp`` (default: the system's), removed at the end.

Run by hand, not by the tests::

    .venv/bin/python bench/chain.py                # 2,000 appends, 5,000 blocks, 1M leaves
    .venv/bin/python bench/chain.py --quick        # 300 appends, 1,000 blocks, 100k leaves
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hypermesh.chain.block import CONTEXT, ZERO, Block
from hypermesh.chain.merkle import (
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from hypermesh.chain.store import SCHEMA, ChainStore, Entry, GroupAppender
from hypermesh.chain.verify import verify_chain
from hypermesh.transport.identity import Identity, verify_signature

QUICK = {"count": 300, "verify_blocks": 1000, "proof_leaves": 100_000}
DEFAULTS = {"count": 2000, "verify_blocks": 5000, "proof_leaves": 1_000_000}
PAYLOAD_SIZE = 100
KIND = 1  # "note"
BATCH = 100
TASKS = 64
ROUNDS = 4
WARM_UP = 5
GOAL = 0.7
HEADER = struct.Struct(">4sBBH32sQ32s32sQQ32s")  # block v1's fixed part: 160 bytes


def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def row(section: str, label: str, count: int, seconds: float, extra: str = "") -> float:
    """Print one rate row; returns the rate."""
    rate = count / seconds
    print(
        f"{section:7} {label:22} {count:8,} {rate:11,.1f} /s {1e6 * seconds / count:10.1f} us"
        + (f"  {extra}" if extra else ""),
        flush=True,
    )
    return rate


def header() -> None:
    print(f"{'':7} {'row':22} {'count':>8} {'rate':>14} {'each':>13}")


def goal(what: str, ratio: float) -> None:
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"goal: {what}: {verdict} ({ratio:.2f}x)", flush=True)


def payloads(count: int) -> list[bytes]:
    return [os.urandom(PAYLOAD_SIZE) for _ in range(count)]


def chunks(count: int) -> list[range]:
    """``range(count)`` cut into ``ROUNDS`` consecutive pieces (some empty when count is small)."""
    bounds = [count * r // ROUNDS for r in range(ROUNDS + 1)]
    return [range(bounds[r], bounds[r + 1]) for r in range(ROUNDS)]


# -- (a) the floor ----------------------------------------------------------------------------


class Floor:
    """The bare loop: per append a header in block v1's layout, signed and hashed, and one row
    (sequence, hash, signed bytes, payload) committed with ChainStore's durability.

    With ``store_sql``, the rows go into ChainStore's own tables with its own statements (two
    tables, a unique index on the block hash, the payload keyed by its hash): the floor with
    the store's SQL, which tells the SQL's share of the gap from our Python's."""

    def __init__(self, path: Path, *, store_sql: bool = False) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes_raw()
        self.store_sql = store_sql
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        if store_sql:
            self.db.executescript(SCHEMA)
        else:
            self.db.execute(
                "CREATE TABLE t (seq INTEGER PRIMARY KEY, hash BLOB, wire BLOB, payload BLOB)"
            )
        self.seq = 0
        self.prev = ZERO

    def make(self, payload: bytes) -> tuple[int, bytes, bytes, bytes, bytes]:
        """(seq, block hash, signed bytes, payload, payload hash) of the next append."""
        digest = hashlib.sha256(payload).digest()
        body = HEADER.pack(
            b"HMCB",
            1,
            KIND,
            0,
            self.public,
            self.seq,
            self.prev,
            ZERO,
            int(time.time() * 1000),
            len(payload),
            digest,
        )
        wire = body + self.key.sign(CONTEXT + body)
        made = (self.seq, hashlib.sha256(wire).digest(), wire, payload, digest)
        self.seq, self.prev = self.seq + 1, made[1]
        return made

    def commit(self, batch: Sequence[bytes]) -> None:
        rows = [self.make(p) for p in batch]
        if self.store_sql:  # exactly what ChainStore.append_many sends
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO blocks (seq, hash, wire) VALUES (?, ?, ?)", [r[:3] for r in rows]
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO payloads (hash, data) VALUES (?, ?)",
                [(r[4], r[3]) for r in rows],
            )
        else:
            self.db.execute("BEGIN")
            if len(rows) == 1:
                self.db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", rows[0][:4])
            else:
                self.db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [r[:4] for r in rows])
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def timed(calls: range, one: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for n in calls:
        one(n)
    return time.perf_counter() - started


# -- (b) the real store -----------------------------------------------------------------------


def appends(folder: Path, count: int) -> None:
    data = payloads(count)
    floor = Floor(folder / "floor-1.db")
    floor_sql = Floor(folder / "floor-sql.db", store_sql=True)
    store = ChainStore.open(folder / "chain-1.db", Identity.generate())
    try:
        for p in payloads(WARM_UP):  # the WAL file made, the pages cached: not counted
            floor.commit([p])
            floor_sql.commit([p])
            store.append(KIND, p)
        floor_s = sql_s = store_s = 0.0
        for part in chunks(count):
            floor_s += timed(part, lambda n: floor.commit([data[n]]))
            sql_s += timed(part, lambda n: floor_sql.commit([data[n]]))
            store_s += timed(part, lambda n: store.append(KIND, data[n]))
        assert store.size == count + WARM_UP
    finally:
        floor.close()
        floor_sql.close()
        store.close()
    header()
    row("append", "floor", count, floor_s, "1 commit each")
    row("append", "floor, store's SQL", count, sql_s, f"{mine_ratio(sql_s, floor_s)} (info)")
    row("append", "ChainStore.append", count, store_s, mine_ratio(store_s, floor_s))
    goal(f"appends >= {GOAL}x the floor", floor_s / store_s)


def mine_ratio(mine_s: float, floor_s: float) -> str:
    return f"{floor_s / mine_s:.2f}x the floor"


def group_commit(folder: Path, count: int) -> None:
    data = payloads(count)
    floor = Floor(folder / "floor-100.db")
    store = ChainStore.open(folder / "chain-100.db", Identity.generate())
    batches = [data[i : i + BATCH] for i in range(0, count, BATCH)]
    try:
        floor.commit(payloads(WARM_UP))
        store.append_many([Entry(KIND, p) for p in payloads(WARM_UP)])
        floor_s = store_s = 0.0
        for part in chunks(len(batches)):
            floor_s += timed(part, lambda b: floor.commit(batches[b]))
            store_s += timed(
                part, lambda b: store.append_many([Entry(KIND, p) for p in batches[b]])
            )
        assert store.size == count + WARM_UP
    finally:
        floor.close()
        store.close()
    note = f"{len(batches)} commits"
    row("group", f"floor {BATCH}/commit", count, floor_s, note)
    row("group", f"append_many({BATCH})", count, store_s, f"{note}, {mine_ratio(store_s, floor_s)}")

    floor = Floor(folder / "floor-same.db")
    store = ChainStore.open(folder / "chain-tasks.db", Identity.generate())
    sizes: list[int] = []
    original = store.append_many

    def counting(entries: Sequence[Entry]) -> list[Block]:
        sizes.append(len(entries))
        return original(entries)

    store.append_many = counting  # type: ignore[method-assign]
    try:
        floor.commit(payloads(WARM_UP))
        asyncio.run(concurrent(store, payloads(WARM_UP)))
        sizes.clear()
        floor_s = store_s = 0.0
        for part in chunks(count):
            mark = len(sizes)
            store_s += asyncio.run(concurrent(store, data[part.start : part.stop]))
            replay, offset = [], part.start  # the floor commits the very same batch sizes
            for size in sizes[mark:]:
                replay.append(data[offset : offset + size])
                offset += size
            floor_s += timed(range(len(replay)), lambda b: floor.commit(replay[b]))  # noqa: B023
        assert store.size == count + WARM_UP
    finally:
        floor.close()
        store.close()
    mean = count / len(sizes)
    note = f"{len(sizes)} commits, mean batch {mean:.1f}"
    row("group", "floor same batches", count, floor_s, note)
    ratio = mine_ratio(store_s, floor_s)
    row("group", f"GroupAppender({TASKS})", count, store_s, f"{note}, {ratio}")


async def concurrent(store: ChainStore, data: Sequence[bytes]) -> float:
    """``len(data)`` appends from ``TASKS`` coroutines through one ``GroupAppender``; returns
    the seconds they took (the event loop's start and end not counted)."""
    appender = GroupAppender(store)

    async def one(share: Sequence[bytes]) -> None:
        for payload in share:
            await appender.append(KIND, payload)

    started = time.perf_counter()
    await asyncio.gather(*(one(data[t::TASKS]) for t in range(TASKS)))
    return time.perf_counter() - started


# -- (c) verification of a foreign chain ------------------------------------------------------


def build_chain(identity: Identity, count: int) -> list[tuple[bytes, bytes]]:
    tree = MerkleTree()
    prev, chain = ZERO, []
    now = int(time.time() * 1000)
    for seq, payload in enumerate(payloads(count)):
        block = Block.create(
            identity,
            kind=KIND,
            seq=seq,
            prev=prev,
            tree_root=tree.root(),
            timestamp_ms=now,
            payload=payload,
        )
        tree.append(block.leaf)
        prev = block.hash
        chain.append((block.wire, payload))
    return chain


def verification(count: int) -> None:
    identity = Identity.generate()
    started = time.perf_counter()
    chain = build_chain(identity, count)
    built = time.perf_counter() - started
    messages = [CONTEXT + wire[:-64] for wire, _ in chain]
    signatures = [wire[-64:] for wire, _ in chain]
    raw = identity.public_key_bytes
    key = Ed25519PublicKey.from_public_bytes(raw)
    node_id = identity.node_id

    def raw_verify() -> None:
        for signature, message in zip(signatures, messages, strict=True):
            key.verify(signature, message)

    def raw_with_load() -> None:
        for signature, message in zip(signatures, messages, strict=True):
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)

    def strict() -> None:
        for signature, message in zip(signatures, messages, strict=True):
            if not verify_signature(node_id, message, signature):
                raise SystemExit("verify_signature refused a good signature")

    def decode() -> None:
        for wire, _ in chain:
            Block.from_wire(wire)

    def whole() -> None:
        checked = verify_chain(((Block.from_wire(w), p) for w, p in chain), author=raw)
        if checked.size != count or checked.payloads_checked != count:
            raise SystemExit(f"verify_chain saw {checked.size} blocks")

    rows: list[tuple[str, Callable[[], None], str]] = [
        ("raw verify", raw_verify, "the floor: key loaded once"),
        ("raw + key load", raw_with_load, "from_public_bytes every call"),
        ("verify_signature", strict, "strict wrapper"),
        ("Block.from_wire", decode, "decoding alone"),
        ("verify_chain", whole, "from_wire + links + tree heads + payloads"),
    ]
    best = {label: float("inf") for label, _, _ in rows}
    for _ in range(ROUNDS):
        for label, run, _ in rows:
            started = time.perf_counter()
            run()
            best[label] = min(best[label], time.perf_counter() - started)
    row("verify", "Block.create (no disk)", count, built, "building the chain: encode + sign")
    floor = best["raw verify"]
    for label, _, note in rows:
        extra = note if label == "raw verify" else f"{floor / best[label]:.2f}x raw; {note}"
        row("verify", label, count, best[label], extra)
    goal(f"verify_chain >= {GOAL}x raw Ed25519 verify", floor / best["verify_chain"])


# -- (d) proofs at a million blocks -----------------------------------------------------------


def percentiles(ns: list[int]) -> tuple[float, float]:
    ordered = sorted(ns)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) / 1e3, p99 / 1e3


def proof_row(label: str, ns: list[int], sizes: list[int] | None = None) -> None:
    median, p99 = percentiles(ns)
    text = f"proofs  {label:22} median {median:9.1f} us  p99 {p99:9.1f} us"
    if sizes:
        mid = statistics.median(sizes)
        text += f"  {mid:4.0f} hashes = {32 * mid:5.0f} bytes (median; max {max(sizes)})"
    print(text, flush=True)


def proofs(leaves: int, calls: int) -> None:
    before = rss_kib()
    started = time.perf_counter()
    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(leaves)]
    hashed = time.perf_counter() - started
    started = time.perf_counter()
    tree = MerkleTree(hashes)
    built = time.perf_counter() - started
    del hashes
    kept = sum(len(level) for level in tree.levels)
    grown = (rss_kib() - before) / 1024
    print(
        f"proofs  {leaves:,} leaves: leaf hashes {hashed:.2f} s, tree built in {built:.2f} s"
        f" ({leaves / built:,.0f} leaves/s); {kept:,} hashes kept = {32 * kept / 2**20:.1f} MiB"
        f" of hash bytes, VmRSS +{grown:.0f} MiB ({1024 * 1024 * grown / kept:.0f} bytes per"
        " hash with Python's objects)",
        flush=True,
    )
    rng = random.Random(6962)
    size = tree.size
    root = tree.root()

    def clock(call: Callable[[], object]) -> tuple[int, object]:
        started = time.perf_counter_ns()
        result = call()
        return time.perf_counter_ns() - started, result

    made, checked, lengths = [], [], []
    for _ in range(calls):
        index = rng.randrange(size)
        ns, proof = clock(lambda: tree.inclusion_proof(index))  # noqa: B023
        made.append(ns)
        assert isinstance(proof, list)
        lengths.append(len(proof))
        leaf = tree.leaf(index)
        ns, ok = clock(lambda: verify_inclusion(leaf, index, size, proof, root))  # noqa: B023
        checked.append(ns)
        if not ok:
            raise SystemExit(f"the inclusion proof of leaf {index} does not verify")
    proof_row("inclusion_proof", made, lengths)
    proof_row("verify_inclusion", checked)

    made, checked, lengths, heads = [], [], [], []
    for _ in range(calls):
        old = rng.randrange(1, size)
        new = rng.randrange(old + 1, size + 1)
        ns, old_root = clock(lambda: tree.root(old))  # noqa: B023
        heads.append(ns)
        new_root = tree.root(new)
        ns, proof = clock(lambda: tree.consistency_proof(old, new))  # noqa: B023
        made.append(ns)
        assert isinstance(proof, list) and isinstance(old_root, bytes)
        lengths.append(len(proof))
        ns, ok = clock(lambda: verify_consistency(old, new, old_root, new_root, proof))  # noqa: B023
        checked.append(ns)
        if not ok:
            raise SystemExit(f"the consistency proof {old} -> {new} does not verify")
    proof_row("consistency_proof", made, lengths)
    proof_row("verify_consistency", checked)
    proof_row("root(n)", heads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, help=f"appends per append/group row (default {DEFAULTS['count']})"
    )
    parser.add_argument(
        "--verify-blocks",
        type=int,
        help=f"blocks of the chain verified (default {DEFAULTS['verify_blocks']})",
    )
    parser.add_argument(
        "--proof-leaves",
        type=int,
        help=f"leaves of the proof tree (default {DEFAULTS['proof_leaves']:,})",
    )
    parser.add_argument(
        "--proof-calls", type=int, default=1000, help="calls per proof row (default 1000)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="300 appends, 1,000 blocks, 100,000 leaves"
    )
    parser.add_argument("--tmp", default=None, help="where the temporary folder is made")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.count, args.verify_blocks, args.proof_calls) < 1 or args.proof_leaves < 2:
        parser.error("every count must be at least 1, and --proof-leaves at least 2")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="hm-bench-chain-", dir=args.tmp) as tmp:
        folder = Path(tmp)
        appends(folder, args.count)
        group_commit(folder, args.count)
    verification(args.verify_blocks)
    proofs(args.proof_leaves, args.proof_calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
