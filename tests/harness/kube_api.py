"""A mock Kubernetes API for the operator: kmock's ``KubernetesEmulator`` with HyperMesh's kinds
and the built-in kinds the operator touches, in process (the operator tests) or in a process of
its own on a loopback port (the benchmark), as a real API server is.

    .venv/bin/python -m tests.harness.kube_api    # prints its URL, serves until stdin closes

kmock keeps objects in memory, serves lists and watch streams, honours finalizers. It does not
assign ``uid``, ``generation`` or a Service's ``clusterIP`` and runs no controllers (no pods, no
garbage collector): objects are created with ``uid`` and ``generation`` set (``body_of``).

The process of its own serves ``CountingEmulator``: it forgets each request once it is matched
(kmock matches a new request against every request it kept, so a long run would cost O(n²))
and counts requests instead, by client: a request with the header ``CLIENT_HEADER`` counts under
that header's value, any other under ``operator``. ``GET /_hypermesh/served`` answers the counts,
the server's CPU seconds and how many objects of each plural are Ready; it is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

API = "hypermesh.online/v1alpha1"
KINDS = {
    "networks": "Network",
    "nodes": "Node",
    "peers": "Peer",
    "tlds": "TLD",
    "records": "Record",
    "interfacepolicies": "InterfacePolicy",
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
BUILTIN = {
    "v1/secrets": "Secret",
    "v1/configmaps": "ConfigMap",
    "v1/services": "Service",
    "v1/events": "Event",
    "apps/v1/deployments": "Deployment",
    "apps/v1/statefulsets": "StatefulSet",
}
CLIENT_HEADER = "X-HyperMesh-Client"
SERVED_PATH = "/_hypermesh/served"
ROOT = Path(__file__).resolve().parent.parent.parent


def emulator(cls: type[kmock.KubernetesEmulator] = kmock.KubernetesEmulator) -> Any:
    """An emulator (of class ``cls``) that knows HyperMesh's kinds and the built-in ones."""
    k = cls()
    k.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", singular="namespace", namespaced=False, verbs={"get", "list", "watch"}
    )
    for plural, kind in KINDS.items():
        k.resources[f"{API}/{plural}"] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=True, verbs=VERBS, subresources={"status"}
        )
    for ref, kind in BUILTIN.items():
        k.resources[ref] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=True, verbs=VERBS
        )
    return k


def body_of(plural: str, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A HyperMesh resource as a client creates it, with what an API server would assign."""
    return {
        "apiVersion": API,
        "kind": KINDS[plural],
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{plural}-{name}",
            "generation": 1,
            "resourceVersion": "1",  # kmock keeps it as is; kopf's patches test it
        },
        "spec": spec,
    }


def collection_url(url: str, plural: str, namespace: str) -> str:
    return f"{url}/apis/{API}/namespaces/{namespace}/{plural}"


@attrs.define
class CountingEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """The emulator that counts requests by client and keeps none once matched."""

    served: Counter[str] = attrs.field(factory=Counter, init=False)

    def ready(self) -> dict[str, int]:
        """How many live objects of each plural report the condition Ready (a client waiting
        for many objects asks this rather than LIST them all again and again)."""
        found: Counter[str] = Counter()
        for (resource, _, _), obj in self.objects.items():
            conditions = (obj.raw.get("status") or {}).get("conditions") or []
            if not obj.deleted and any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
            ):
                found[resource.plural] += 1
        return dict(found)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # kmock appends the request to its history and calls this at once (no await between):
        # the history is this request alone, which is all the matching needs to see.
        del self._requests[:-1]
        if request.url.path == SERVED_PATH:
            return aiohttp.web.json_response(
                {"requests": dict(self.served), "cpu": time.process_time(), "ready": self.ready()}
            )
        self.served[request.headers.get(CLIENT_HEADER, "operator")] += 1
        return await super()._handle(request)  # type: ignore[no-any-return]


async def serve() -> None:
    """Serve ``CountingEmulator`` on a loopback port; print its URL; stop when stdin closes."""
    k = emulator(CountingEmulator)
    async with k, kmock.Server(k):
        print(str(k.url).rstrip("/"), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextlib.contextmanager
def api_process() -> Iterator[str]:
    """``serve`` in a process of its own; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.kube_api"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the mock API did not start (it printed {url!r})")
        yield url
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ApiClient:
    """What a client of the API process does: create resources, list them, read the counts.
    Its own requests carry ``CLIENT_HEADER: client``, counted apart from the operator's."""

    def __init__(self, url: str, session: aiohttp.ClientSession, client: str = "bench") -> None:
        self.url = url
        self.session = session
        self.headers = {CLIENT_HEADER: client}

    async def create(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        async with self.session.post(
            collection_url(self.url, plural, namespace),
            json=body_of(plural, namespace, name, spec),
            headers=self.headers,
        ) as response:
            assert response.status in (200, 201), await response.text()

    async def all(self, plural: str, namespace: str) -> dict[str, dict[str, Any]]:
        """Every live object of a HyperMesh kind in a namespace, by name (one LIST)."""
        async with self.session.get(
            collection_url(self.url, plural, namespace), headers=self.headers
        ) as response:
            assert response.status == 200, await response.text()
            items = (await response.json())["items"]
        return {item["metadata"]["name"]: item for item in items}

    async def served(self) -> dict[str, Any]:
        """The requests served by client, the server's CPU seconds so far, and the number of
        Ready objects by plural."""
        async with self.session.get(self.url + SERVED_PATH) as response:
            return dict(await response.json())


if __name__ == "__main__":
    asyncio.run(serve())
