"""The SDK for scripts: the same operations as ``hypermesh.sdk.Mesh``, each a plain call that
runs to completion (an event loop of its own per call; not for use inside a running loop).

    from hypermesh.sdk.sync import Mesh

    mesh = Mesh.from_state(".hypermesh", node="alpha")
    print(mesh.resolve("www.acme", "HTTPS").records)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hypermesh.chain.block import Block, Link
from hypermesh.chain.provenance import Bundle
from hypermesh.sdk import mesh as aio
from hypermesh.sdk.mesh import Answer, Endpoint, Response

T = TypeVar("T")


def _run(make: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(make)


class Mesh:
    """``hypermesh.sdk.Mesh``, synchronously."""

    def __init__(self, inner: aio.Mesh) -> None:
        self.inner = inner

    @classmethod
    def from_state(cls, state: str | Path = ".hypermesh", *, node: str | None = None) -> Mesh:
        return cls(aio.Mesh.from_state(state, node=node))

    def peer(self, name: str) -> Endpoint:
        return self.inner.peer(name)

    def _fresh(self) -> aio.Mesh:
        """A Mesh for one call: kept-open connections belong to one event loop."""
        inner = self.inner
        return aio.Mesh(
            inner.identity,
            node=inner.node,
            registry=inner.registry,
            directory=inner.directory,
            timeout=inner.timeout,
        )

    def _do(self, name: str, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            async with self._fresh() as mesh:
                return await getattr(mesh, name)(*args, **kwargs)

        return _run(call())

    def resolve(self, name: str, type: str = "A", **kwargs: Any) -> Answer:
        result: Answer = self._do("resolve", name, type, **kwargs)
        return result

    def fetch(self, url: str, **kwargs: Any) -> Response:
        result: Response = self._do("fetch", url, **kwargs)
        return result

    def register_tld(self, tld: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._do("register_tld", tld, **kwargs)
        return result

    def set_records(self, tld: str, name: str, type: str, values: Sequence[str], **kw: Any) -> int:
        return int(self._do("set_records", tld, name, type, values, **kw))

    def delete_records(self, tld: str, name: str, type: str) -> int:
        return int(self._do("delete_records", tld, name, type))

    def append(self, payload: bytes, *, kind: str = "note", links: Sequence[Link] = ()) -> Block:
        result: Block = self._do("append", payload, kind=kind, links=links)
        return result

    def blocks(self, of: Endpoint | None = None, start: int = 0) -> list[Block]:
        result: list[Block] = self._do("blocks", of, start)
        return result

    def provenance(self, seq: int, origin: str, of: Endpoint | None = None) -> Bundle:
        result: Bundle = self._do("provenance", seq, origin, of)
        return result

    verify_bundle = staticmethod(aio.Mesh.verify_bundle)

    def send(self, to: Endpoint, text: str) -> dict[str, Any]:
        result: dict[str, Any] = self._do("send", to, text)
        return result

    def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._do("inbox", limit)
        return result

    def request(
        self,
        destination: Endpoint,
        relays: Sequence[Endpoint],
        method: str,
        path: str,
        *,
        body: bytes = b"",
        ttl: float = 60.0,
    ) -> Any:
        """One request through a fresh tunnel (opened and closed in this call)."""

        async def call() -> Any:
            async with self._fresh() as mesh:
                tunnel = await mesh.tunnel(destination, relays, ttl=ttl)
                async with tunnel:
                    return await tunnel.request(method, path, body=body)

        return _run(call())
