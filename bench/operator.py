"""Reconciling Record resources through the operator against a mock Kubernetes API.

    .venv/bin/python bench/operator.py                 # 1,000 records
    .venv/bin/python bench/operator.py --records 200   # quicker

One registry node process on loopback; kmock (an in-memory Kubernetes API, no API server) with
one Network, one owner Node and one TLD; the operator's kopf handlers running in this process.
Then ``--records`` Record resources are created at once and timed until every one reports
Ready. Each Record goes through the operator's shell over the reconciler's logic (prepare,
observe, plan, apply) and ``hmctl``'s ``RecordDriver`` on the Kubernetes ports (the owner's key
read once from its Secret, addresses from the Nodes' status in kopf's index). Printed: wall time,
Kubernetes API calls per record (every request kmock served, minus the bench's own creations:
kopf's finalizer patch and one status patch), registry API calls per record. The baseline, in the
same run and against the same registry: the same records applied by the same driver
(``RecordDriver.apply`` on the standalone directory), called directly with the parallelism of
``hmctl``'s reconciler, which the operator also keeps to. Drift timers run at their default
interval (60 s), longer than a run: none fires while it is timed.

The machine's other load moves both figures a lot between the two runs; compare several runs.
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

# This file's name shadows the standard library's ``operator`` when run as a script: take its
# folder off the import path before anything imports ``operator``.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import asyncio
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HM_OPERATOR_RECORD_INTERVAL", "60")  # the default: no drift check runs

from tests.harness.nodes import start_node
from tests.operator.harness import API, running_operator

from hypermesh.drivers import StandaloneDirectory
from hypermesh.drivers import registry as registry_driver
from hypermesh.drivers.registry import RecordDriver, TLDDriver
from hypermesh.model.loader import load_text
from hypermesh.model.validate import build
from hypermesh.reconcile import ApplyContext, ReconcileSettings
from hypermesh.transport.identity import load_or_create_identity
from hypermesh_operator import handlers

NS = "bench"
PARALLEL = ReconcileSettings().parallelism
"""The parallelism of both sides: ``ReconcileSettings``' default bound, which ``hmctl``'s
reconciler puts on one kind's wave and the operator on the resources it reconciles at once."""
PROGRESS = bool(os.environ.get("HM_BENCH_PROGRESS"))

REGISTRY_CALLS: Counter[str] = Counter()
_original_call = registry_driver._Registry.call


async def _counted(self: Any, where: Any, method: str, path: str, *args: Any, **kw: Any) -> Any:
    REGISTRY_CALLS[f"{method} {path.split('/')[-1] or path}"] += 1
    return await _original_call(self, where, method, path, *args, **kw)


registry_driver._Registry.call = _counted  # type: ignore[method-assign]

HANDLER_SECONDS: list[float] = []
_original_reconcile = handlers.reconcile_resource


async def _timed(*args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    try:
        return await _original_reconcile(*args, **kwargs)
    finally:
        HANDLER_SECONDS.append(time.perf_counter() - start)


handlers.reconcile_resource = _timed  # type: ignore[assignment]


def ready(obj: Mapping[str, Any] | None) -> bool:
    conds = (obj or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


KEEP = 1
"""Requests of kmock's history kept while the bench runs (see ``_trim``)."""


async def _trim(c: Any, counted: list[int], every: float = 0.02) -> None:
    """kmock keeps every request it served and checks each new one against all of them to
    pick a reaction (O(n) a request, so O(n²) a run: 80% of the CPU at 200 records). The bench
    keeps the last ``KEEP`` (a request is matched as soon as it is recorded, before any other
    task runs, so none in flight is lost) and counts the rest in
    ``counted``, so the mock costs the same for the thousandth record as for the first."""
    history = c.k._requests  # kmock has no public way to forget requests
    while True:
        await asyncio.sleep(every)
        extra = len(history) - KEEP
        if extra > 0:
            del history[:extra]
            counted[0] += extra


async def through_operator(root: Path, address: str, identity: str, count: int) -> dict[str, Any]:
    async with running_operator() as c:
        counted = [0]
        trimming = asyncio.create_task(_trim(c, counted))
        await c.create(
            "networks",
            NS,
            "acme",
            {"mode": "private", "registry": {"endpoint": address, "identity": identity}},
        )
        await c.create("nodes", NS, "owner", {"network": "acme", "listen": "127.0.0.1:0"})
        await c.create("tlds", NS, "acme", {"network": "acme", "owner": {"node": "owner"}})
        await c.wait("the TLD", lambda: ready(c.find(f"{API}/tlds", NS, "acme")), timeout=30)
        await asyncio.sleep(0.5)
        REGISTRY_CALLS.clear()
        HANDLER_SECONDS.clear()
        before = c.requests() + counted[0]
        start = time.perf_counter()
        await asyncio.gather(
            *(
                c.create(
                    "records",
                    NS,
                    f"r{i}.acme",
                    {
                        "tld": "acme",
                        "type": "A",
                        "values": [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"],
                    },
                )
                for i in range(count)
            )
        )
        names = [f"r{i}.acme" for i in range(count)]

        def all_ready() -> bool:
            live = c.all(f"{API}/records", NS)
            done = sum(ready(live.get(n)) for n in names)
            if PROGRESS:
                print(f"  {time.perf_counter() - start:6.1f} s: {done} ready, {len(c.k)} requests")
            return done == len(names)

        await c.wait("every record Ready", all_ready, timeout=max(120.0, count * 3.0), every=1.0)
        wall = time.perf_counter() - start
        api = c.requests() + counted[0] - before - count  # the bench's own POSTs are not
        trimming.cancel()
        return {
            "wall": wall,
            "api": api,
            "registry": sum(REGISTRY_CALLS.values()),
            "handler": sum(HANDLER_SECONDS),
            "runs": len(HANDLER_SECONDS),
        }


async def direct(root: Path, address: str, identity: str, count: int) -> dict[str, Any]:
    """The baseline: ``RecordDriver.apply`` for each record, as ``hmctl apply`` calls it."""
    text = [
        f"apiVersion: {API}\nkind: Network\nmetadata: {{name: acme}}\n"
        f"spec: {{mode: private, registry: {{endpoint: '{address}', identity: {identity}}}}}\n",
        f"apiVersion: {API}\nkind: Node\nmetadata: {{name: owner}}\n"
        "spec: {network: acme, listen: '127.0.0.1:0'}\n",
        f"apiVersion: {API}\nkind: TLD\nmetadata: {{name: base}}\n"
        "spec: {network: acme, owner: {node: owner}}\n",
    ]
    text += [
        f"apiVersion: {API}\nkind: Record\nmetadata: {{name: r{i}.base}}\n"
        f"spec: {{tld: base, type: A, values: ['10.{i // 65536}.{i // 256 % 256}.{i % 256}']}}\n"
        for i in range(count)
    ]
    desired, problems = build(load_text("---\n".join(text)))
    assert not problems, problems[:3]
    directory = StandaloneDirectory(root / "state")
    load_or_create_identity(directory.node_dir("owner"))
    context = ApplyContext(desired, 1)
    tld = desired.get("TLD", "base")
    assert tld is not None
    await TLDDriver(directory).apply(tld, {}, context)
    driver = RecordDriver(directory)
    REGISTRY_CALLS.clear()
    gate = asyncio.Semaphore(PARALLEL)

    async def one(resource: Any) -> None:
        async with gate:
            await driver.apply(resource, {}, context)

    start = time.perf_counter()
    await asyncio.gather(*(one(r) for r in desired.of_kind("Record")))
    return {"wall": time.perf_counter() - start, "api": 0, "registry": sum(REGISTRY_CALLS.values())}


def row(label: str, count: int, figures: dict[str, Any]) -> str:
    return (
        f"{label:<34} {figures['wall']:8.2f} s {count / figures['wall']:9.1f}/s "
        f"{figures['api'] / count:10.2f} {figures['registry'] / count:10.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = start_node(root / "registry", "registry", roles=["registry"])
        try:
            run: Callable[..., Awaitable[dict[str, Any]]]
            results = {}
            for label, run in (
                ("registry driver, direct (hmctl)", direct),
                ("operator (kopf + kmock)", through_operator),
            ):
                results[label] = asyncio.run(
                    run(root, registry.address, registry.identity, args.records)
                )
        finally:
            registry.stop()
    print(f"{args.records} Record resources, one TLD, one registry node on loopback")
    print(f"{'':<34} {'wall':>10} {'rate':>11} {'API/rec':>10} {'reg/rec':>10}")
    for label, figures in results.items():
        print(row(label, args.records, figures))
    op = results["operator (kopf + kmock)"]
    print(
        f"operator: {op['runs']} handler runs, {op['handler']:.2f} s inside the Record handler "
        f"in all ({op['handler'] / max(op['runs'], 1) * 1000:.1f} ms a run, overlapping); the "
        "rest of the wall time is kopf and kmock (its history trimmed to the last "
        f"{KEEP} requests, so its matching costs the same throughout)"
    )


if __name__ == "__main__":
    main()
