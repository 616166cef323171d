"""The SDK against a real network started by `hmctl apply` (the registry-and-names example):
names resolved and checked from the registry's key, a name fetched over HTTP/3 with its key
pinned from TLSA, registrations and records with the owner's key, chains, messages as an async
iterator, and errors that are always HyperMesh's own."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from hypermesh.chain.block import Link
from hypermesh.errors import HyperMeshError
from hypermesh.sdk import Mesh, PeerRef, Refused, Unverified, sync
from hypermesh.transport.identity import Identity


async def until(check, limit: float = 20.0):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(limit):
        while True:
            try:
                value = await check()
            except HyperMeshError:
                value = None
            if value:
                return value
            await asyncio.sleep(0.2)


def test_the_sdk_does_what_hmctl_does(acme: Path) -> None:
    async def scenario() -> None:
        async with (
            Mesh.from_state(acme, node="alpha") as alpha,
            Mesh.from_state(acme, node="beta") as beta,
        ):
            # Names, checked from the registry's key down.
            api = await alpha.resolve("api.acme", "A")
            assert api.verified and sorted(api.records) == ["192.0.2.10", "192.0.2.11"]
            missing = await alpha.resolve("nope.acme", "A")
            assert missing.rcode == "NXDOMAIN" and missing.verified

            # https://www.acme/ — endpoint from the HTTPS record, key from the TLSA record.
            page = await alpha.fetch("https://www.acme/status")
            assert page.status == 200 and page.json()["identity"] == alpha.peer("alpha").node_id

            # Records with the owner's key (alpha owns acme); beta is refused.
            serial = await alpha.set_records("acme", "sdk", "TXT", ['"from the sdk"'])
            assert serial > 0
            txt = await until(lambda: _records(alpha, "sdk.acme", "TXT", via=alpha.registry))
            assert txt == ('"from the sdk"',)
            with pytest.raises(Refused) as refused:
                await beta.set_records("acme", "sdk", "TXT", ['"not mine"'])
            assert refused.value.status == 403
            registered = await alpha.register_tld("sdkzone", network="acme")
            assert registered["owner"] == alpha.identity.node_id  # type: ignore[union-attr]

            # Chains: append with the node's key, read back checked, prove inclusion.
            block = await alpha.append(b"written by the sdk")
            blocks = await alpha.blocks()
            assert blocks[block.seq].hash == block.hash
            proof = await alpha.chain().inclusion(block.seq)
            assert int(proof["size"]) > block.seq

            # Provenance: beta links to alpha's block; a bundle proves beta had seen it.
            seen = Link(alpha.identity.public_key_bytes, block.seq, block.hash)  # type: ignore[union-attr]
            linked = await beta.append(b"", kind="link", links=[seen])
            origin = f"{alpha.identity.node_id}:{block.seq}"  # type: ignore[union-attr]
            await until(lambda: _followed(beta, alpha.identity.node_id, block.seq))  # type: ignore[union-attr]
            bundle = await beta.provenance(linked.seq, origin)
            assert "had seen block" in Mesh.verify_bundle(bundle)
            # Swap in another of alpha's blocks as the origin: a claim beta never made.
            raw = bundle.to_json()
            other = await alpha.append(b"a later block beta never linked to")
            raw["blocks"][-1] = base64.b64encode(other.wire).decode()
            raw["origin"] = {"author": other.author_id, "seq": other.seq, "hash": other.hash.hex()}
            with pytest.raises(HyperMeshError, match="link"):
                Mesh.verify_bundle(raw)

            # Messages: sent sealed, received as an async iterator.
            await alpha.send(beta.peer("beta"), "hello from the sdk")

            async def first() -> dict[str, object]:
                async for message in beta.messages(poll=0.2):
                    if message["text"] == "hello from the sdk":
                        return message
                raise AssertionError("the iterator ended")

            got = await asyncio.wait_for(first(), 20)
            assert got["from"] == alpha.identity.node_id  # type: ignore[union-attr]

            # Errors are HyperMesh's own, never a raw library exception.
            with pytest.raises(HyperMeshError):
                await alpha.fetch("https://nope.acme/")
            wrong = Mesh(
                None,
                node=alpha.node,
                registry=PeerRef(alpha.registry.address, Identity.generate().node_id),  # type: ignore[union-attr]
            )
            with pytest.raises(HyperMeshError):
                await wrong.resolve("api.acme", "A")
            dead = Mesh(None, node=PeerRef("127.0.0.1:9", alpha.node.node_id), timeout=1)  # type: ignore[union-attr]
            with pytest.raises(HyperMeshError):
                await dead.resolve("api.acme", "A", verify=False)

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_the_sync_sdk_for_scripts(acme: Path) -> None:
    mesh = sync.Mesh.from_state(acme, node="alpha")
    assert mesh.resolve("api.acme", "A").verified
    assert mesh.fetch("https://www.acme/healthz").json() == {"ok": True}
    block = mesh.append(b"sync")
    assert mesh.blocks()[block.seq].hash == block.hash
    assert isinstance(mesh.inbox(), list)


async def _followed(mesh: Mesh, author: str, seq: int) -> bool:
    """Whether ``mesh``'s node follows ``author``'s chain up to block ``seq``."""
    chains = (await mesh.chain().replicas()).get("chains", [])
    return any(c["author"] == author and c["size"] > seq for c in chains)


async def _records(mesh: Mesh, name: str, type: str, via: PeerRef | None) -> tuple[str, ...]:
    return (await mesh.resolve(name, type, via=via)).records


def test_unverified_is_an_sdk_error() -> None:
    assert issubclass(Unverified, HyperMeshError) and issubclass(Refused, HyperMeshError)
