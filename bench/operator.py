"""Reconciling Record resources through the operator against a mock Kubernetes API.

    .venv/bin/python bench/operator.py                 # 1,000 records
    .venv/bin/python bench/operator.py --records 200   # quicker

One registry node process on loopback. The Kubernetes API is kmock (an in-memory emulator; there
is no API server here) in a process of its own on a loopback port, as an API server is a process
apart from the operator (``tests.harness.kube_api``; it keeps no request history, so it costs
the same for the thousandth record as for the first). The operator's kopf handlers run in this
process and reach it over HTTP (``HM_KUBE_SERVER``). One Network, one owner Node and one TLD are
created; then ``--records`` Record resources at once, timed until every one is Ready (the API
process counts them, asked every ``POLL`` seconds). Each Record goes through the operator's
shell over the reconciler's logic (prepare, observe, plan, apply) and ``hmctl``'s
``RecordDriver`` on the Kubernetes ports (the owner's key read once from its Secret, addresses
from the Nodes' status in kopf's index).

Printed: wall time; Kubernetes API calls per record (the requests the API process served the
operator while timed: kopf's finalizer patch and one status patch; the bench's own creations are
counted apart); registry API calls per record; the CPU seconds of each process while timed
(this one, the API process, the registry node). The baseline, in the same run and against
the same registry: the same records applied by the same driver (``RecordDriver.apply`` on the
standalone directory), called directly in this process with the parallelism of ``hmctl``'s
reconciler, which the operator also keeps to. Drift timers run at their default interval
(60 s), longer than a run: none fires while it is timed.

The machine has 2 cores: the operator side runs three busy processes (operator, API, registry)
where the baseline runs two. Other load moves both figures a lot; compare several runs.
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

import aiohttp
from tests.harness.kube_api import API, ApiClient, api_process
from tests.harness.nodes import start_node
from tests.harness.proc import cpu_seconds
from tests.operator.harness import operator_watching

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


POLL = 0.25
"""Seconds between the bench's questions to the API process while it waits for the Records to
be Ready (how many are, counted there: a LIST of every Record each time would cost both
processes more than the records themselves at 1,000)."""


async def until(what: str, check: Callable[[], Awaitable[bool]], limit: float) -> None:
    """Await ``check`` every ``POLL`` seconds until it is true; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(POLL)


async def declare_tld(c: ApiClient, address: str, identity: str) -> None:
    """The Network, the owner Node and the TLD, Ready before anything is timed."""
    registry = {"endpoint": address, "identity": identity}
    await c.create("networks", NS, "acme", {"mode": "private", "registry": registry})
    await c.create("nodes", NS, "owner", {"network": "acme", "listen": "127.0.0.1:0"})
    await c.create("tlds", NS, "acme", {"network": "acme", "owner": {"node": "owner"}})

    async def tld_ready() -> bool:
        return ready((await c.all("tlds", NS)).get("acme"))

    await until("the TLD", tld_ready, limit=30)
    await asyncio.sleep(0.5)


def record_spec(i: int) -> dict[str, Any]:
    return {"tld": "acme", "type": "A", "values": [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"]}


async def through_operator(
    url: str, address: str, identity: str, count: int, pids: Mapping[str, int]
) -> dict[str, Any]:
    async with operator_watching(url), aiohttp.ClientSession() as session:
        c = ApiClient(url, session)
        await declare_tld(c, address, identity)
        REGISTRY_CALLS.clear()
        HANDLER_SECONDS.clear()
        before, cpu = await c.served(), cpu_now(pids)
        start = time.perf_counter()
        await asyncio.gather(
            *(c.create("records", NS, f"r{i}.acme", record_spec(i)) for i in range(count))
        )

        async def all_ready() -> bool:
            done = int((await c.served())["ready"].get("records", 0))
            if PROGRESS:
                print(f"  {time.perf_counter() - start:6.1f} s: {done} ready")
            return done == count

        await until("every record Ready", all_ready, limit=max(120.0, count * 3.0))
        wall = time.perf_counter() - start
        after, used = await c.served(), cpu_since(cpu, pids)
        used["API process"] = after["cpu"] - before["cpu"]
        return {
            "wall": wall,
            "api": after["requests"]["operator"] - before["requests"]["operator"],
            "registry": sum(REGISTRY_CALLS.values()),
            "handler": sum(HANDLER_SECONDS),
            "runs": len(HANDLER_SECONDS),
            "cpu": used,
        }


def cpu_now(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of this process and of each of ``pids`` (by label)."""
    return {"this process": time.process_time(), **{k: cpu_seconds(p) for k, p in pids.items()}}


def cpu_since(then: Mapping[str, float], pids: Mapping[str, int]) -> dict[str, float]:
    now = cpu_now(pids)
    return {k: now[k] - then[k] for k in then}


async def direct(
    root: Path, address: str, identity: str, count: int, pids: Mapping[str, int]
) -> dict[str, Any]:
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

    cpu, start = cpu_now(pids), time.perf_counter()
    await asyncio.gather(*(one(r) for r in desired.of_kind("Record")))
    return {
        "wall": time.perf_counter() - start,
        "api": 0,
        "registry": sum(REGISTRY_CALLS.values()),
        "cpu": cpu_since(cpu, pids),
    }


def row(label: str, count: int, figures: dict[str, Any]) -> str:
    return (
        f"{label:<34} {figures['wall']:8.2f} s {count / figures['wall']:9.1f}/s "
        f"{figures['api'] / count:10.2f} {figures['registry'] / count:10.2f}"
    )


DIRECT, OPERATOR = "registry driver, direct (hmctl)", "operator (kopf, kmock apart)"


def measure(root: Path, count: int) -> dict[str, dict[str, Any]]:
    """Both sides against one registry node; the operator's against the API process."""
    registry = start_node(root / "registry", "registry", roles=["registry"])
    try:
        pids = {"registry node": registry.process.pid}
        address, identity = registry.address, registry.identity
        results = {DIRECT: asyncio.run(direct(root, address, identity, count, pids))}
        with api_process() as url:
            results[OPERATOR] = asyncio.run(through_operator(url, address, identity, count, pids))
        return results
    finally:
        registry.stop()


def report(count: int, results: Mapping[str, dict[str, Any]]) -> None:
    print(f"{count} Record resources, one TLD, one registry node on loopback")
    print(f"{'':<34} {'wall':>10} {'rate':>11} {'API/rec':>10} {'reg/rec':>10}")
    for label, figures in results.items():
        print(row(label, count, figures))
    for label, figures in results.items():
        used = ", ".join(f"{k} {v:.2f} s" for k, v in figures["cpu"].items())
        print(f"CPU while timed, {label}: {used}")
    direct_wall, op = results[DIRECT]["wall"], results[OPERATOR]
    print(f"operator / direct wall time: {op['wall'] / direct_wall:.2f}x")
    each = op["handler"] / max(op["runs"], 1) * 1000
    print(
        f"operator: {op['runs']} Record handler runs, {each:.1f} ms a run"
        " (overlapping, the wait for the reconciler's parallelism included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp), args.records)
    report(args.records, results)


if __name__ == "__main__":
    main()
