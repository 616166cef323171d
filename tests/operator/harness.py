"""The operator against kmock: a mock Kubernetes API (kmock's ``KubernetesEmulator``, with the
kinds of ``tests.harness.kube_api``) that kopf watches and patches, with the operator's handlers
running in the same event loop.

There is no API server on this machine; kmock keeps objects in memory, serves lists and watch
streams, honours finalizers, and records every request (the tests look at them). It does not
assign ``uid``, ``generation`` or a Service's ``clusterIP`` and runs no controllers (no pods, no
garbage collector): tests create custom resources with ``uid`` and ``generation`` set, and check
owner references rather than cascades. ``operator_watching`` runs the operator against any API
URL (the benchmark's mock API in a process of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kmock

os.environ.setdefault("HM_OPERATOR_EXPIRY_INTERVAL", "0.5")
os.environ.setdefault("HM_OPERATOR_RETRY_DELAY", "0.5")
os.environ.setdefault("HM_OPERATOR_RECORD_INTERVAL", "1")

import kopf

import hypermesh_operator.handlers  # noqa: F401 (registers the handlers)
from tests.harness.kube_api import API, body_of, collection_url, emulator

__all__ = ["API", "MockCluster", "emulator", "operator_watching", "running_operator"]


@dataclass
class MockCluster:
    """The running mock API and operator; helpers to act and to look."""

    k: kmock.KubernetesEmulator
    url: str
    session: aiohttp.ClientSession

    def find(self, ref: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object (``ref`` like ``v1/secrets`` or ``hypermesh.online/v1alpha1/nodes``)."""
        return self.all(ref, namespace).get(name)

    def all(self, ref: str, namespace: str) -> dict[str, dict[str, Any]]:
        """Every live object of a resource in a namespace, by name."""
        target = kmock.resource(ref)
        return {
            name: dict(obj.raw)
            for (resource, ns, name), obj in self.k.objects.items()
            if ns == namespace
            and (resource.group, resource.version, resource.plural)
            == (target.group, target.version, target.plural)
            and not obj.deleted
        }

    async def create(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = body_of(plural, namespace, name, spec)
        url = collection_url(self.url, plural, namespace)
        async with self.session.post(url, json=body) as response:
            assert response.status in (200, 201), await response.text()

    async def delete(self, plural: str, namespace: str, name: str) -> None:
        url = f"{self.url}/apis/{API}/namespaces/{namespace}/{plural}/{name}"
        async with self.session.delete(url) as response:
            assert response.status in (200, 202), await response.text()

    async def wait(
        self,
        what: str,
        check: Callable[[], Any],
        timeout: float = 15.0,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
        every: float = 0.05,
    ) -> Any:
        """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            await asyncio.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

    def requests(self) -> int:
        return len(self.k)


@contextlib.asynccontextmanager
async def operator_watching(url: str) -> AsyncIterator[None]:
    """The operator's handlers watching the API at ``url`` (cluster-wide), in this event loop."""
    os.environ["HM_KUBE_SERVER"] = url
    stop, ready = asyncio.Event(), asyncio.Event()
    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 10
    operator = asyncio.create_task(
        kopf.operator(
            clusterwide=True,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
            settings=settings,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(operator, 15)
        os.environ.pop("HM_KUBE_SERVER", None)


@contextlib.asynccontextmanager
async def running_operator() -> AsyncIterator[MockCluster]:
    """kmock on a loopback port, in this process, and the operator watching it."""
    k = emulator()
    async with k, kmock.Server(k):
        url = str(k.url).rstrip("/")
        async with operator_watching(url), aiohttp.ClientSession() as session:
            yield MockCluster(k, url, session)
