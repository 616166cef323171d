"""The node directory at scale: what one node-record update and one lookup cost with 100,000
records in the registry, next to a 1,000-record directory, on SQLite and on PostgreSQL.

For each backend and size it fills a fresh registry (``Directory.bulk_load``: rows inserted in
batches, the ``_nodes.`` zone signed once in full), then times, in process, through the
registry's Python API, first as a public network's directory, then (the same registry, the
directory opened again as private) as a private network's:

  update   ``Directory.publish`` of a newer record (seq + 1) of a random stored node: the
           signature checked, the row replaced, the zone re-signed incrementally (the changed
           record sets, the NSEC around them, SOA), in one transaction. Private: also the
           ZONEMD over the whole zone and a journal entry (mirrors copy the zone whole and
           follow its increments), which is how every directory worked before; public: neither
  batch    ``Directory.publish_many`` of BATCH newer records of random nodes, in one
           transaction and one signing pass (what a registry does with the updates that
           arrive within a few milliseconds); the time per record, each batch's time / BATCH
  lookup   ``Directory.get`` of a random node ID (the API's ``GET /registry/v1/node?id=``)

and prints p50/p99 of each, with the time the fill took. Run by hand, not by the tests::

    .venv/bin/python bench/directory.py                      # 1,000 and 100,000, both backends
    .venv/bin/python bench/directory.py --quick              # 1,000 and 20,000: a few minutes
    .venv/bin/python bench/directory.py --sizes 1000,10000 --ops 100 --backends sqlite

PostgreSQL: a database of its own (``hm_bench_directory``) on the server of this machine,
created when missing and emptied first (``--postgres`` names the server's URL).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from hypermesh.registry.directory import ZONE, Directory
from hypermesh.registry.service import Registry
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DATABASE = "hm_bench_directory"
LIFETIME = 86400.0
BATCH = 50
"""Records per ``publish_many`` call of the batch rows."""


def fresh_postgres(server: str) -> str:
    """The benchmark's own database, created when missing, its tables dropped."""
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.execute(text(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")).first():
            conn.execute(text(f"DROP DATABASE {DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    admin.dispose()
    return f"{server}/{DATABASE}"


def records(count: int, now: float) -> list[tuple[Identity, NodeRecord]]:
    """``count`` nodes, each with a signed record (two addresses, as a node publishes)."""
    out = []
    for i in range(count):
        key = Identity.generate()
        address = f"198.18.{i // 250 % 250}.{i % 250 + 1}"
        out.append((key, issue(key, address, now, 1)))
    return out


def issue(key: Identity, address: str, now: float, seq: int) -> NodeRecord:
    return NodeRecord.issue(
        key,
        network="bench",
        name=f"n-{key.node_id[3:15]}",
        interfaces={"public": [f"{address}:4433"], "private": [f"{address}:4434"]},
        issued_at=now,
        lifetime=LIFETIME,
        seq=seq,
        host="h",
        roles=("mirror",),
        version="0.1.0",
    )


def timed(operation: Callable[[int], object], ops: int) -> list[float]:
    out = []
    for i in range(ops):
        start = time.perf_counter()
        operation(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(
    where: str, nodes: list[tuple[Identity, NodeRecord]], ops: dict[str, int]
) -> dict[str, dict[str, object]]:
    """Fill a registry at ``where`` with ``nodes``, then time ``ops[mode]`` updates and lookups
    in each mode (public first: a private directory's first change digests the whole zone)."""
    now = time.time()
    registry = Registry.open(where, admin=Identity.generate().node_id)
    seqs: dict[int, int] = {}
    out: dict[str, dict[str, object]] = {}
    try:
        start = time.perf_counter()
        Directory(registry, "bench", public=True).bulk_load(record for _, record in nodes)
        fill = time.perf_counter() - start
        for mode, count in ops.items():
            trusted = [] if mode == "public" else [record.node_id for _, record in nodes]
            directory = Directory(registry, "bench", public=mode == "public", trusted=trusted)
            out[mode] = {"fill": fill, **measure(directory, nodes, count, seqs, now)}
            journal = registry.journal_since(ZONE, registry.get_tld(ZONE).serial - 1)
            assert (journal is None) == (mode == "public"), "a journal only when private"
            zonemd = registry.zone(ZONE).get_rdataset("@", "ZONEMD")
            assert (zonemd is None) == (mode == "public"), "a ZONEMD only when private"
        return out
    finally:
        registry.close()


def measure(
    directory: Directory,
    nodes: list[tuple[Identity, NodeRecord]],
    ops: int,
    seqs: dict[int, int],
    now: float,
) -> dict[str, list[float]]:
    """Update and look up ``ops`` random nodes of ``directory``; the times (ms) of each."""
    rng = random.Random(len(seqs) + 7)
    picked = [rng.randrange(len(nodes)) for _ in range(ops)]
    batches = max(5, ops // 10)
    grouped = [rng.sample(range(len(nodes)), min(BATCH, len(nodes))) for _ in range(batches)]

    def newer(at: int) -> dict[str, str]:
        key, record = nodes[at]
        seqs[at] = seqs.get(at, 1) + 1
        return issue(key, record.addresses[0].split(":")[0], now, seqs[at]).to_json()

    def update(i: int) -> None:
        directory.publish(newer(picked[i]))

    def batch(i: int) -> None:
        outcomes = directory.publish_many(payloads[i])
        assert all(isinstance(o, NodeRecord) for o in outcomes)

    # Warm-up: the first change after a full signing (or a switch of mode) orders the names
    # once and, with a ZONEMD, encodes every node for the digest once.
    seqs[0] = seqs.get(0, 1) + 1
    directory.publish(issue(nodes[0][0], "198.18.0.1", now, seqs[0]).to_json())
    serial = directory.registry.get_tld(ZONE).serial
    updates = timed(update, ops)
    lookups = timed(lambda i: directory.get(nodes[picked[i]][1].node_id), ops)
    assert directory.registry.get_tld(ZONE).serial == serial + ops
    payloads = [[newer(at) for at in group] for group in grouped]  # signed before the clock
    per_record = [ms / len(grouped[0]) for ms in timed(batch, batches)]
    assert directory.registry.get_tld(ZONE).serial == serial + ops + batches
    return {"update": updates, "batch": per_record, "lookup": lookups}


def table(rows: list[tuple[str, int, str, dict[str, object]]]) -> None:
    """p50, p99 and mean of each operation, a line per backend, size, mode and operation."""
    print(
        f"{'backend':<11}{'records':>9}  {'mode':<8}{'op':<7}{'n':>5}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'mean ms':>9}"
    )
    for backend, size, mode, result in rows:
        for op in ("update", "batch", "lookup"):
            samples = result[op]
            assert isinstance(samples, list)
            print(
                f"{backend:<11}{size:>9}  {mode:<8}{op:<7}{len(samples):>5}"
                f"{pct(samples, 50):>9.2f}{pct(samples, 99):>9.2f}"
                f"{statistics.fmean(samples):>9.2f}",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000", help="comma-separated record counts")
    parser.add_argument("--ops", type=int, default=200, help="updates and lookups per size")
    parser.add_argument(
        "--private-ops",
        type=int,
        default=50,
        help="updates and lookups per size in private mode above 10,000 records (each digests "
        "the whole zone)",
    )
    parser.add_argument("--modes", default="public,private", help="comma-separated")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--postgres", default=SERVER, help="PostgreSQL server URL")
    parser.add_argument(
        "--quick", action="store_true", help="1,000 and 20,000 records, 100 operations"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.ops, args.private_ops = "1000,20000", 100, 30
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    if not set(modes) <= {"public", "private"}:
        parser.error(f"unknown mode in {args.modes!r}: public or private")
    started = time.perf_counter()
    everyone = records(max(sizes), time.time())
    print(f"{max(sizes)} signed node records made in {time.perf_counter() - started:.1f} s")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            for size in sizes:
                if backend == "sqlite":
                    where = str(Path(folder) / f"directory-{size}.db")
                elif backend == "postgresql":
                    where = fresh_postgres(args.postgres)
                else:
                    parser.error(f"unknown backend {backend!r}: sqlite or postgresql")
                ops = {
                    m: args.ops if m == "public" or size <= 10000 else args.private_ops
                    for m in modes
                }
                results = run(where, everyone[:size], ops)
                fill = next(iter(results.values()))["fill"]
                print(f"  {backend} {size}: filled in {fill:.1f} s", flush=True)
                rows += [(backend, size, mode, result) for mode, result in results.items()]
                table(rows[-len(results) :])
    print()
    table(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
