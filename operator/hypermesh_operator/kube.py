"""A small Kubernetes API client for the children the operator manages (kopf watches and patches
its own resources; this client creates, reads, patches and deletes everything else).

Over aiohttp (kopf's own dependency): in the cluster with the pod's service account, or against
``HM_KUBE_SERVER`` (a plain URL, no credentials: a mock API in tests, ``kubectl proxy`` by hand).
API failures become HyperMesh errors with a retry policy: 5xx, 429 and connection failures are
temporary; other refusals are permanent.
"""

from __future__ import annotations

import os
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hypermesh.errors import PermanentError, TemporaryError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 30.0
"""Seconds any one API request may take."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the API server is and how to authenticate."""

    server: str
    token: str | None = None
    ca_path: str | None = None

    @classmethod
    def from_environment(cls) -> Connection:
        """``HM_KUBE_SERVER`` when set; else the pod's service account."""
        server = os.environ.get("HM_KUBE_SERVER")
        if server:
            return cls(server.rstrip("/"))
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise PermanentError(
                "no Kubernetes API: not in a pod (KUBERNETES_SERVICE_HOST) and HM_KUBE_SERVER "
                "is not set"
            )
        host = f"[{host}]" if ":" in host else host
        token = (SERVICE_ACCOUNT / "token").read_text(encoding="ascii").strip()
        return cls(f"https://{host}:{port}", token, str(SERVICE_ACCOUNT / "ca.crt"))


def path_of(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    """The URL path of a namespaced collection, or of one object in it."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


PLURALS = {"Secret": "secrets", "ConfigMap": "configmaps", "Service": "services"}
PLURALS |= {"Deployment": "deployments", "StatefulSet": "statefulsets", "Event": "events"}
PLURALS |= {"PersistentVolumeClaim": "persistentvolumeclaims"}


def path_for(obj: Mapping[str, Any], *, named: bool = True) -> str:
    """The URL path of ``obj`` (a built-in object with apiVersion, kind, metadata)."""
    meta = obj["metadata"]
    return path_of(
        str(obj["apiVersion"]),
        PLURALS[str(obj["kind"])],
        str(meta["namespace"]),
        str(meta["name"]) if named else None,
    )


class Kube:
    """An API session; ``calls`` counts requests by ``METHOD kind`` (the benchmark reads it)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.calls: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            if self.connection.token:
                headers["Authorization"] = f"Bearer {self.connection.token}"
            context: ssl.SSLContext | None = None
            if self.connection.ca_path:
                context = ssl.create_default_context(cafile=self.connection.ca_path)
            self._session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                connector=aiohttp.TCPConnector(ssl=context) if context else None,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        self.calls[f"{method} {_plural(path)}"] += 1
        session = self._open()
        try:
            async with session.request(
                method,
                self.connection.server + path,
                json=body,
                headers={"Content-Type": content_type} if body is not None else None,
            ) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = {}
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryError(
                f"the Kubernetes API is unreachable: {exc}", reason="APIDown"
            ) from exc
        if not isinstance(data, dict):
            data = {}
        if status >= 500 or status == 429:
            raise TemporaryError(
                f"{method} {path}: the API answered {status}: {data.get('message', '')}",
                reason="APIError",
            )
        return status, data

    def _refused(self, method: str, path: str, status: int, data: Mapping[str, Any]) -> Exception:
        return PermanentError(
            f"{method} {path}: the API answered {status}: {data.get('message', '')}",
            reason="APIRefused",
        )

    async def get(self, path: str) -> dict[str, Any] | None:
        status, data = await self.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise self._refused("GET", path, status, data)
        return data

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        path = path_for(obj, named=False)
        status, data = await self.request("POST", path, obj)
        if status == 409:
            raise TemporaryError(f"{path_for(obj)} exists already", reason="Conflict", delay=1)
        if status not in (200, 201):
            raise self._refused("POST", path, status, data)
        return data

    async def patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        status, data = await self.request("PATCH", path, patch, content_type=MERGE_PATCH)
        if status != 200:
            raise self._refused("PATCH", path, status, data)
        return data

    async def delete(self, path: str) -> bool:
        """Delete (foreground: dependents first); False when it was gone already."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
        status, data = await self.request("DELETE", path, body)
        if status == 404:
            return False
        if status not in (200, 202):
            raise self._refused("DELETE", path, status, data)
        return True

    async def ensure(
        self,
        obj: Mapping[str, Any],
        *,
        immutable: bool = False,
        keep: Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create ``obj``, or bring the live one to it with a merge patch (the fields ``obj``
        names; others are left alone). An ``immutable`` object is only created; ``keep``
        (desired, live) → desired puts back the live fields the API refuses to change."""
        live = await self.get(path_for(obj))
        if live is None:
            return await self.create(obj)
        if immutable:
            return live
        if keep is not None:
            obj = keep(obj, live)
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        if contains(live, body):
            return live
        return await self.patch(path_for(obj), body)


def _plural(path: str) -> str:
    """The resource a request is about: ``pods`` for ``/api/v1/namespaces/NS/pods/NAME``,
    ``nodes`` for the cluster-scoped ``/api/v1/nodes/NAME``."""
    if "/namespaces/" in path:
        parts = path.split("/namespaces/", 1)[1].split("/")
        return parts[1] if len(parts) > 1 else "namespaces"
    parts = path.split("?", 1)[0].strip("/").split("/")
    skip = 2 if parts[0] == "api" else 3  # api/VERSION or apis/GROUP/VERSION
    return parts[skip] if len(parts) > skip else parts[-1]


def contains(live: Any, wanted: Any) -> bool:
    """True when every field of ``wanted`` has the same value in ``live`` (maps compared by the
    keys ``wanted`` names; lists and scalars exactly)."""
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(contains(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)
