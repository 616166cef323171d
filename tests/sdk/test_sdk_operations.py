"""The SDK operations `hmctl dns`, `chain` and `registry` are built on, against a real network
started by `hmctl apply` (node processes, QUIC on loopback): DNS messages over DoQ and DoH3
with the verdict in the result, chain reads and end-to-end verification, and the registry's
TLD life cycle, administration and revocations, each signed by the key that may do it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.message
import pytest

from hypermesh.errors import HyperMeshError
from hypermesh.sdk import Mesh, MeshNode, PeerRef, Refused, VerifiedChain
from hypermesh.transport.identity import Identity, load_identity

ADMIN_KEY = Path("nodes") / "registry" / "registry-admin" / "identity.key"


def test_dns_messages_with_the_verdict_in_the_result(acme: Path) -> None:
    async def scenario() -> None:
        async with Mesh.from_state(acme, node="alpha") as alpha:
            assert alpha.registry is not None and alpha.registry.node_id
            asked = dns.message.make_query("api.acme.", "A", want_dnssec=True, use_edns=0)
            for transport in ("doq", "doh3", "doh3-get"):
                plain = await alpha.query(asked, transport=transport)
                assert sorted(plain.records) == ["192.0.2.10", "192.0.2.11"], transport
                assert not plain.verified and plain.zone is None and plain.size > 0
            checked = await alpha.query(asked, verify=True)
            assert checked.verified and checked.failure is None and checked.zone == "acme."
            # Without a registry, the key to check from is named: the same verdict.
            bare = Mesh(alpha.identity, node=alpha.node)
            named = await bare.query(asked, verify=True, anchor=alpha.registry.node_id)
            assert named.verified and named.zone == "acme."
            with pytest.raises(HyperMeshError, match="registry"):
                await bare.query(asked, verify=True)
            # A key that did not sign the anchors: refused, never a raw library error.
            with pytest.raises(HyperMeshError):
                await bare.query(asked, verify=True, anchor=Identity.generate().node_id)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_chains_read_and_verified_end_to_end(acme: Path) -> None:
    async def scenario() -> None:
        async with Mesh.from_state(acme, node="alpha") as alpha:
            block = await alpha.append(b"checked by the sdk")
            head = await alpha.head()
            assert head.author == alpha.node.node_id and head.size > block.seq  # type: ignore[union-attr]
            got, payload = await alpha.block(block.seq)
            assert got.hash == block.hash and payload == b"checked by the sdk"
            entries = await alpha.entries(start=block.seq)
            assert entries[0][0].hash == block.hash and entries[0][1] == payload
            chain = await alpha.verify_chain()
            assert isinstance(chain, VerifiedChain) and chain.author == head.author
            assert chain.size >= head.size and len(chain.blocks) == chain.size
            assert chain.payloads_checked >= 1
            # Read from another node's Mesh: the same chain, named by its PeerRef.
            async with Mesh.from_state(acme, node="beta") as beta:
                of = PeerRef(alpha.node.address, alpha.node.node_id)  # type: ignore[union-attr]
                again = await beta.verify_chain(of)
                assert again.author == chain.author and again.size >= chain.size
                trusted = [n.node_id for n in alpha.directory.values() if n.node_id]
                size, count = await beta.witnesses(again, trusted, of)
                assert 0 <= size <= again.size and 0 <= count < len(trusted)
                with pytest.raises(HyperMeshError, match="malformed node ID"):
                    await beta.witnesses(again, ["not-a-node-id"], of)
            inclusion = await alpha.inclusion(block.seq)
            assert inclusion["seq"] == block.seq and int(inclusion["size"]) > block.seq
            consistency = await alpha.consistency(1, chain.size)
            assert int(consistency["to"]) == chain.size

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_registry_life_cycle_each_signed_by_who_may(acme: Path) -> None:
    admin_key = load_identity(acme / ADMIN_KEY)

    async def scenario() -> None:
        async with (
            Mesh.from_state(acme, node="alpha") as alpha,
            Mesh.from_state(acme, node="beta") as beta,
        ):
            admin = Mesh(admin_key, registry=alpha.registry)
            reader = Mesh(None, registry=alpha.registry)
            assert alpha.identity is not None and beta.identity is not None
            assert "acme" in {t["name"] for t in await reader.tlds()}
            assert (await reader.tld("acme"))["owner"] == alpha.identity.node_id

            # Register, renew, transfer (cosigned by the new owner); the old owner is refused.
            await alpha.register_tld("opszone", network="acme")
            renewed = await alpha.renew_tld("opszone")
            assert renewed["name"] == "opszone" and renewed["status"] == "active"
            with pytest.raises(Refused) as refused:
                await beta.renew_tld("opszone")
            assert refused.value.status == 403 and refused.value.reason.startswith("403")
            moved = await alpha.transfer_tld("opszone", beta.identity)
            assert moved["owner"] == beta.identity.node_id
            assert (await reader.tld("opszone"))["owner"] == beta.identity.node_id

            # Manual approval: pending until the administrator approves or rejects.
            with pytest.raises(Refused):
                await alpha.change_registry_policy(approval="manual")  # not the administrator
            changed = await admin.change_registry_policy(approval="manual", term_days=30)
            assert changed["approval"] == "manual" and changed["termDays"] == 30
            assert (await reader.registry_policy())["approval"] == "manual"
            assert (await beta.register_tld("waitzone", network="acme"))["status"] == "pending"
            assert (await admin.approve_tld("waitzone"))["status"] == "active"
            await beta.register_tld("nozone", network="acme")
            rejected = await admin.reject_tld("nozone", "not today")
            assert rejected["status"] == "rejected"
            expired = await admin.expire_tld("waitzone", "abuse")
            assert expired["status"] == "expired"
            await admin.change_registry_policy(approval="automatic")

            # Reserved names, and revocations.
            assert "held" in (await admin.reserve_name("held"))["reserved"]
            with pytest.raises(Refused):
                await beta.register_tld("held", network="acme")
            assert "held" not in (await admin.unreserve_name("held"))["reserved"]
            gone = Identity.generate()
            await gone_mesh(gone, alpha).revoke_key(gone.node_id, reason="lost", replaced_by=None)
            revoked = {r["nodeId"]: r for r in await reader.revocations()}
            assert revoked[gone.node_id]["reason"] == "lost"

    asyncio.run(asyncio.wait_for(scenario(), 90))


def gone_mesh(key: Identity, like: Mesh) -> Mesh:
    """A Mesh acting as ``key`` at ``like``'s registry: a key revoking itself."""
    return Mesh(key, registry=like.registry)


def test_a_message_without_a_question_is_refused_before_anything_is_sent() -> None:
    nowhere = Mesh(None, node=PeerRef("127.0.0.1:9"))
    with pytest.raises(HyperMeshError, match="has none"):
        asyncio.run(nowhere.query(dns.message.Message()))


def test_a_mesh_node_is_a_peer_ref_with_a_name() -> None:
    node_id = Identity.generate().node_id
    node = MeshNode("[::1]:4433", node_id, name="alpha", ephemeral="[::1]:4434")
    assert isinstance(node, PeerRef) and node.host == "::1" and node.port == 4433
    assert str(node) == "alpha" and str(MeshNode("[::1]:4433", node_id)) == "[::1]:4433"
    with pytest.raises(ValueError, match="nowhere"):
        MeshNode("nowhere", node_id, name="ghost")
