"""Signed registrations and record batches per second, on SQLite and on PostgreSQL, next to the
floor of the same database: a raw INSERT per transaction with the same durability.

The benchmark of the registry's write path. For each backend it prints:

  floor      one INSERT of a row as wide as a TLD's (two PEM keys) per transaction, through the
             same driver and with the same durability (SQLite: WAL, ``synchronous=FULL``;
             PostgreSQL: autocommit, the server's ``synchronous_commit``): what one durable
             write costs before any of our code runs
  register   ``verify_request`` + ``Registry.register``: signature checked, nonce stored, zone
             keys generated, the empty zone built and signed, the row committed; in process
  batch      ``verify_request`` + ``Registry.patch`` with one record set, then the zone rebuilt
             and signed as the API does before it serves it; in process
  api-reg    signed registrations over HTTP/3 on a warm connection, one at a time, to a server in
             a child process; with that server's CPU per registration (``/proc/PID/stat``)
  api-batch  signed record batches over HTTP/3 the same way

Run by hand, not by the tests::

    .venv/bin/python bench/registrations.py                     # both backends, every row
    .venv/bin/python bench/registrations.py --count 100 --backends sqlite

PostgreSQL is the server of this machine (``--postgres URL``, default the ``test`` database at
127.0.0.1:5432); the registry's tables in it are emptied first. SQLite files go to a temporary
folder on the same disk as ``--tmp`` (default: the system's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from hypermesh.dns import DnsEngine, StaticZones
from hypermesh.node.registry_api import PREFIX, add_registry_routes
from hypermesh.node.router import Router
from hypermesh.node.routes import add_dns_routes
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.registry.requests import MAX_BATCH
from hypermesh.registry.service import Change, DatabaseNonceCache, Policy, Registry
from hypermesh.registry.signing import sign_request, verify_request
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness
from tests.harness.registry_db import emptied

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
OWNER = Identity.generate()
ROW_PAD = "k" * 480  # about the size of one Ed25519 PEM key, twice per row as in registry_tlds


def report(backend: str, label: str, count: int, elapsed: float, extra: str = "") -> None:
    print(
        f"{backend:10} {label:10} {count / elapsed:8.1f} /s  {1e3 * elapsed / count:7.2f} ms each"
        + (f"  {extra}" if extra else ""),
        flush=True,
    )


def timed(count: int, one: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for n in range(count):
        one(n)
    return time.perf_counter() - started


# -- (a) the floor ----------------------------------------------------------------------------


def floor_sqlite(folder: Path, count: int) -> float:
    db = sqlite3.connect(folder / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (name TEXT PRIMARY KEY, owner TEXT, ksk TEXT, zsk TEXT)")

    def one(n: int) -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (f"n{n}", OWNER.node_id, ROW_PAD, ROW_PAD))
        db.execute("COMMIT")

    try:
        return timed(count, one)
    finally:
        db.close()


def floor_postgres(url: str, count: int) -> float:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS hm_bench_floor")
        db.execute(
            "CREATE TABLE hm_bench_floor (name TEXT PRIMARY KEY, owner TEXT, ksk TEXT, zsk TEXT)"
        )

        def one(n: int) -> None:
            db.execute(
                "INSERT INTO hm_bench_floor VALUES (%s, %s, %s, %s)",
                (f"n{n}", OWNER.node_id, ROW_PAD, ROW_PAD),
            )

        try:
            return timed(count, one)
        finally:
            db.execute("DROP TABLE hm_bench_floor")


# -- (b) the registry in process --------------------------------------------------------------


ONE_OWNER = Policy(max_tlds_per_owner=1_000_000)
"""One key registers every TLD of the run: the quota of TLDs per owner key lifted."""


def in_process(where: str, count: int, backend: str, records: int) -> None:
    registry = Registry.open(where, admin=Identity.generate().node_id, policy=ONE_OWNER)
    nonces = DatabaseNonceCache(registry)
    body = b'{"tld":"x","network":"bench"}'

    def signed(path: str) -> str:
        now = time.time()
        headers = sign_request(OWNER, "POST", path, body, now=now)
        return verify_request("POST", path, body, headers, now=now, seen=nonces).signer

    def register(n: int) -> None:
        registry.register(f"inproc{n}", signed(f"{PREFIX}/register"), "bench")
        registry.zone(f"inproc{n}")

    def batch(n: int) -> None:
        one = change(batch_body("inproc0", n)["rrsets"][0])  # type: ignore[index]
        registry.patch("inproc0", [one], signer=signed(f"{PREFIX}/rrsets"))
        registry.zone("inproc0")

    def rebuild(_: int) -> None:
        row = registry.get_tld("inproc0")
        registry._zones.pop(row.name)  # what every change cost before incremental signing
        registry.zone(row.name)

    try:
        report(backend, "register", count, timed(count, register))
        if records:
            filled = [change(r) for r in prefill(records)]
            registry.patch("inproc0", filled, signer=OWNER.node_id)
        note = f"into a zone of {records}+ record sets"
        report(backend, "batch", count, timed(count, batch), note)
        rebuilds = max(3, count // 20)
        report(backend, "full-sign", rebuilds, timed(rebuilds, rebuild), "the same zone, in full")
    finally:
        registry.close()


# -- (c) over HTTP/3, the server in a child process -------------------------------------------


async def serve(where: str) -> None:
    identity = Identity.generate()
    registry = Registry.open(where, admin=Identity.generate().node_id, policy=ONE_OWNER)
    zones = StaticZones()
    router = add_registry_routes(Router(), registry, zones)
    answerer = DnsEngine(zones)
    add_dns_routes(router, answerer)
    endpoint = await bind_endpoint(
        "127.0.0.1",
        0,
        configuration=server_configuration(identity),
        router=router,
        dns_answer=answerer.answer,
    )
    print(endpoint.port, identity.node_id, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def register_body(name: str) -> dict[str, object]:
    return {"tld": name, "network": "bench"}


def batch_body(tld: str, n: int) -> dict[str, object]:
    rrset = {"name": f"host{n}", "type": "A", "ttl": 300, "values": [f"198.51.100.{n % 250}"]}
    return {"tld": tld, "rrsets": [rrset]}


def prefill(records: int) -> list[dict[str, object]]:
    """Record sets that fill a zone before its batches are timed."""
    return [
        {"name": f"pre{n}", "type": "A", "ttl": 300, "values": [f"192.0.2.{n % 250}"]}
        for n in range(records)
    ]


def change(data: dict[str, Any]) -> Change:
    return Change(data["name"], data["type"], "REPLACE", data["ttl"], tuple(data["values"]))


async def over_http3(where: str, count: int, backend: str, records: int) -> None:
    child = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [sys.executable, __file__, "--serve", where],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port, node_id = child.stdout.readline().split()
        async with connect_h3(f"127.0.0.1:{port}", expected_id=node_id, identity=None) as h3:

            async def call(path: str, data: dict[str, object]) -> None:
                raw = json.dumps(data).encode()
                headers = {"content-type": "application/json"}
                headers |= sign_request(OWNER, "POST", path, raw, now=time.time())
                status, _, answer = await h3.request(
                    "POST", path, headers=list(headers.items()), body=raw
                )
                if status not in (200, 201):
                    raise SystemExit(f"{path}: {status} {answer[:200]!r}")

            tag = secrets.token_hex(3)
            await call(f"{PREFIX}/register", register_body(f"api{tag}"))
            filled = prefill(records)
            for start in range(0, len(filled), MAX_BATCH):  # the API takes MAX_BATCH at a time
                batch = filled[start : start + MAX_BATCH]
                await call(f"{PREFIX}/rrsets", {"tld": f"api{tag}", "rrsets": batch})
            rows: list[tuple[str, str, Callable[[int], dict[str, object]]]] = [
                ("api-reg", f"{PREFIX}/register", lambda n: register_body(f"api{tag}x{n}")),
                ("api-batch", f"{PREFIX}/rrsets", lambda n: batch_body(f"api{tag}", n)),
            ]
            for label, path, body in rows:
                cpu, started = cpu_seconds(child.pid), time.perf_counter()
                for n in range(count):
                    await call(path, body(n))
                elapsed = time.perf_counter() - started
                used = 1e3 * (cpu_seconds(child.pid) - cpu) / count
                report(backend, label, count, elapsed, f"server CPU {used:6.2f} ms each")
    finally:
        child.kill()
        child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--count", type=int, default=300, help="writes per row")
    parser.add_argument(
        "--records", type=int, default=1000, help="records in the zone the batches change"
    )
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL URL (emptied first)")
    parser.add_argument("--tmp", default=None, help="folder for the SQLite files")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                report(backend, "floor", args.count, floor_sqlite(folder, args.count))
                in_process(str(folder / "inproc.db"), args.count, backend, args.records)
                asyncio.run(over_http3(str(folder / "api.db"), args.count, backend, args.records))
            elif backend == "postgresql":
                report(backend, "floor", args.count, floor_postgres(args.postgres, args.count))
                in_process(emptied(args.postgres), args.count, backend, args.records)
                where = emptied(args.postgres)
                asyncio.run(over_http3(where, args.count, backend, args.records))
            else:
                parser.error(f"unknown backend {backend!r}: sqlite or postgresql")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
