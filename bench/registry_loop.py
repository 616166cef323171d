"""How long the registry node's event loop is held by registry writes, and what a record batch
into a 10,000-record zone costs, before and after the registry moved off the loop.

Two parts, each measured side by side in one run:

  loop lag   A probe on the event loop asks to wake every millisecond and records how late it
             wakes (``lag``), while signed record batches (``POST /registry/v1/rrsets``, one
             record set each, the handler called in process: signature, nonce, patch, zone
             served) are sent by ``--writers`` concurrent writers into a zone of ``--records``
             record sets. Rows: ``idle`` (the probe alone: the floor of the timer), ``on-loop``
             (``Worker(inline=True)``: every registry call on the loop, as before) and
             ``writer`` (the registry's writer thread, as now). p50 / p99 / max of the lag, and
             the writes per second.
  batch      ``Registry.patch`` of one record set, then ``Registry.zone``, in process, into a
             zone of 10,000 record sets (``--batch-records``): the code before the incremental
             work was trimmed (``--before``, a git revision, read with ``git archive``) and the
             code of this tree, each in a child process.

Run by hand, not by the tests::

    .venv/bin/python bench/registry_loop.py                       # SQLite, every row
    .venv/bin/python bench/registry_loop.py --backend postgresql  # the local server's ``test``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from hypermesh.dns import StaticZones
from hypermesh.node.registry_api import PREFIX, add_registry_routes
from hypermesh.node.router import Request, Router
from hypermesh.registry.service import Change, Policy, Registry
from hypermesh.registry.signing import sign_request
from hypermesh.transport.identity import Identity

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness
from tests.harness.registry_db import emptied

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
OWNER = Identity.generate()
ROOT = Path(__file__).resolve().parent.parent
BEFORE = "ea36823^"
"""The tree before a batch stopped walking the whole zone (diff, delegation check, ZONEMD)."""


def percentiles(lags: list[float]) -> str:
    if not lags:
        return "no samples"
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"lag p50 {1e3 * statistics.median(ordered):6.2f} ms  p99 {1e3 * p99:6.2f} ms  "
        f"max {1e3 * ordered[-1]:6.2f} ms  ({len(ordered)} samples)"
    )


async def probe(stop: asyncio.Event, lags: list[float], every: float = 0.001) -> None:
    """Wake every ``every`` seconds and keep how late each wake-up was."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(every)
        lags.append(max(0.0, time.perf_counter() - started - every))


class GcPauses:
    """The garbage collector's pauses (``gc.callbacks``): both threads wait through one."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)


def signed(path: str, body: dict[str, object]) -> Request:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    headers |= sign_request(OWNER, "POST", path, raw, now=time.time())
    return Request("POST", path, headers=tuple(headers.items()), body=raw)


def filled(where: str, records: int, inline: bool) -> Registry:
    """A registry holding TLD ``bench`` of ``records`` record sets, its zone signed."""
    from hypermesh.registry.worker import Worker  # not in the tree of the "before" row

    registry = Registry.open(
        where,
        admin=Identity.generate().node_id,
        policy=Policy(max_tlds_per_owner=10),
        worker=Worker(inline=inline),
    )
    registry.register("bench", OWNER.node_id, "bench")
    prefill = [
        Change(f"pre{n}", "A", "REPLACE", 300, (f"192.0.2.{n % 250}",)) for n in range(records)
    ]
    if prefill:
        registry.patch("bench", prefill, signer=OWNER.node_id)
    registry.zone("bench")
    return registry


async def loop_lag(
    where: str, *, inline: bool | None, records: int, writes: int, writers: int
) -> tuple[list[float], int, float]:
    """The probe's lags while ``writes`` batches are written (None: no writes, the floor);
    with the writes done and the seconds they took."""
    lags: list[float] = []
    stop = asyncio.Event()
    if inline is None:
        task = asyncio.create_task(probe(stop, lags))
        await asyncio.sleep(2.0)
        stop.set()
        await task
        return lags, 0, 2.0
    registry = filled(where, records, inline)
    router = add_registry_routes(Router(), registry, StaticZones())
    done = 0

    async def writer(me: int) -> None:
        nonlocal done
        for n in range(me, writes, writers):
            rrset = {"name": f"host{n}", "type": "A", "ttl": 300, "values": ["198.51.100.7"]}
            path = f"{PREFIX}/rrsets"
            answer = await router.dispatch(signed(path, {"tld": "bench", "rrsets": [rrset]}))
            if answer.status != 200:
                raise SystemExit(f"rrsets: {answer.status} {answer.body[:200]!r}")
            done += 1
            await asyncio.sleep(0)  # the next request comes at another turn, as off the wire

    task = asyncio.create_task(probe(stop, lags))
    await asyncio.sleep(0.2)
    lags.clear()
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(writers))), 300)
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        registry.close()
    return lags, done, elapsed


def batch_child(where: str, records: int, count: int) -> None:
    """In a child process: ms per batch into a zone of ``records`` record sets (this code, or
    the code on ``PYTHONPATH``)."""
    registry = Registry.open(where, admin=Identity.generate().node_id)
    registry.register("bench", OWNER.node_id, "bench")
    prefill = [
        Change(f"pre{n}", "A", "REPLACE", 300, (f"192.0.2.{n % 250}",)) for n in range(records)
    ]
    registry.patch("bench", prefill, signer=OWNER.node_id)
    registry.zone("bench")
    for n in range(3):  # warm
        change = Change(f"warm{n}", "A", "REPLACE", 300, ("198.51.100.1",))
        registry.patch("bench", [change], signer=OWNER.node_id)
        registry.zone("bench")
    times = []
    for n in range(count):
        change = Change(f"host{n}", "A", "REPLACE", 300, (f"198.51.100.{n % 250}",))
        started = time.perf_counter()
        registry.patch("bench", [change], signer=OWNER.node_id)
        registry.zone("bench")
        times.append(time.perf_counter() - started)
    registry.close()
    print(json.dumps(times))


def batch_row(label: str, tree: Path | None, where: str, records: int, count: int) -> None:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "controller")
    args = [sys.executable, __file__, "--batch-child", where, str(records), str(count)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=1200)
    if out.returncode != 0:
        print(f"{label:10} batch failed: {out.stderr[-400:]}", flush=True)
        return
    times = sorted(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"{label:10} batch into {records} record sets: p50 {1e3 * statistics.median(times):7.2f} ms"
        f"  max {1e3 * times[-1]:7.2f} ms  ({count} batches)",
        flush=True,
    )


def old_tree(revision: str, folder: Path) -> Path | None:
    """The package as it was at ``revision`` (``git archive``), or None without git."""
    try:
        raw = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "controller/hypermesh"],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"before: cannot read {revision} with git ({exc}); that row is skipped")
        return None
    with tarfile.open(fileobj=BytesIO(raw)) as archive:
        archive.extractall(folder, filter="data")
    return folder


def where_for(backend: str, folder: Path, name: str, postgres: str) -> str:
    if backend == "sqlite":
        return str(folder / f"{name}.db")
    return emptied(postgres)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--records", type=int, default=1000, help="record sets in the lag zone")
    parser.add_argument("--writes", type=int, default=200, help="batches per lag row")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writers")
    parser.add_argument("--batch-records", type=int, default=10000)
    parser.add_argument("--batch-count", type=int, default=50)
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' batch row")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL URL (emptied first)")
    args = parser.parse_args()
    if args.batch_child:
        where, records, count = args.batch_child
        batch_child(where, int(records), int(count))
        return 0
    from hypermesh.registry.worker import Worker

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"switch interval of the writer: {Worker().switch_interval} s (Python's default 0.005)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lags, _, _ = asyncio.run(loop_lag("", inline=None, records=0, writes=0, writers=0))
        print(f"{'idle':10} {percentiles(lags)}", flush=True)
        for label, inline in (("on-loop", True), ("writer", False)):
            where = where_for(args.backend, folder, label, args.postgres)
            pauses = GcPauses()
            gc.callbacks.append(pauses)
            lags, done, elapsed = asyncio.run(
                loop_lag(
                    where,
                    inline=inline,
                    records=args.records,
                    writes=args.writes,
                    writers=args.writers,
                )
            )
            gc.callbacks.remove(pauses)
            print(
                f"{label:10} {percentiles(lags)}  {done / elapsed:6.1f} writes/s  "
                f"longest gc pause {1e3 * pauses.longest:.1f} ms",
                flush=True,
            )
        tree = old_tree(args.before, folder / "before")
        for label, code in (("before", tree), ("now", None)):
            if label == "before" and code is None:
                continue
            where = where_for(args.backend, folder, f"batch-{label}", args.postgres)
            batch_row(label, code, where, args.batch_records, args.batch_count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
