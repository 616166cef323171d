"""Messages between nodes started by `hmctl apply`: delivered end to end encrypted, receipts on
both chains linking to each other, the recipient following the sender's chain at once (a
receipt's provenance without a restart), a message tampered in transit refused with nothing
stored, and a revoked key's messages refused by every node, whichever way they come."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypermesh.messaging.envelope import Ref, check_card, seal
from hypermesh.transport.client import AccessDenied, connect_h3, h3_get, h3_get_json
from hypermesh.transport.identity import Identity, load_identity
from tests.conftest import Hmctl, wait_for
from tests.e2e.conftest import items


def test_send_and_receive_with_receipts_on_both_chains(hmctl: Hmctl, applied: Path) -> None:
    sent = hmctl("message", "send", "alpha", "beta", "--text", "deploy at noon", "-o", "json")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    data = json.loads(sent.stdout)

    inbox = hmctl("message", "inbox", "beta")
    assert inbox.returncode == 0, inbox.stderr
    assert "deploy at noon" in inbox.stdout and "alpha" in inbox.stdout
    assert hmctl("message", "inbox", "alpha").stdout == ""  # nothing for alpha

    message = json.loads(hmctl("chain", "show", "alpha", str(data["message"]["seq"])).stdout)
    receipt = json.loads(hmctl("chain", "show", "beta", str(data["receipt"]["seq"])).stdout)
    ack = json.loads(hmctl("chain", "show", "alpha", str(data["ack"]["seq"])).stdout)
    assert message["kind"] == "message" and receipt["kind"] == "receipt"
    assert receipt["links"] == [
        {"author": message["author"], "seq": message["seq"], "hash": message["hash"]}
    ]
    assert ack["links"] == [
        {"author": receipt["author"], "seq": receipt["seq"], "hash": receipt["hash"]}
    ]
    # The chains hold neither the text nor anything that reveals it.
    for block in (message, receipt, ack):
        assert "deploy" not in json.dumps(block)

    # Another node's key cannot read beta's inbox.
    status_of_stranger = hmctl_inbox_as(hmctl, "beta", signer="alpha")
    assert status_of_stranger == 403

    # beta follows the chain its receipt links to from the moment it appends the receipt: the
    # proof that beta had seen alpha's message block comes without a restart.
    origin = f"{message['author']}:{message['seq']}"
    bundle = applied / "receipt.json"

    def proven() -> bool:
        made = hmctl(
            "chain", "provenance", "beta", str(receipt["seq"]), "--origin", origin,
            "--out", str(bundle),
        )  # fmt: skip
        return made.returncode == 0

    wait_for(proven, timeout=20, interval=0.5)
    checked = hmctl("chain", "verify", "--bundle", str(bundle))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"had seen block {message['seq']} of {message['author']}" in checked.stdout


def hmctl_inbox_as(hmctl: Hmctl, node: str, signer: str) -> int:
    from hypermesh.registry.client import RegistryClient
    from hypermesh.transport.identity import load_or_create_identity

    status = items(hmctl, "nodes")[node]["status"]
    client = RegistryClient(
        status["address"], status["identity"], label=f"node {node}", identity=None
    )
    key = load_or_create_identity(hmctl.state / "nodes" / signer)
    code, _ = asyncio.run(client.call("GET", "/message/v1/inbox", None, signer=key))
    return code


def test_a_message_tampered_in_transit_is_refused(hmctl: Hmctl, applied: Path) -> None:
    beta = items(hmctl, "nodes")["beta"]["status"]

    async def post(body: bytes) -> int:
        async with (
            asyncio.timeout(10),
            connect_h3(beta["address"], expected_id=beta["identity"], identity=None) as h3,
        ):
            status, _, _ = await h3.request(
                "POST",
                "/message/v1/inbox",
                headers=[("content-type", "application/octet-stream")],
                body=body,
            )
        return status

    before = json.loads(hmctl("chain", "log", "beta", "-o", "json").stdout)
    assert asyncio.run(post(b"\x00" * 200)) == 400
    assert asyncio.run(post(b"")) == 400
    after = json.loads(hmctl("chain", "log", "beta", "-o", "json").stdout)
    assert after == before  # no receipt for what could not be opened
    assert hmctl("message", "inbox", "beta").stdout == ""


def test_nodes_find_each_other(hmctl: Hmctl, applied: Path) -> None:
    from hypermesh.transport.client import h3_get_json

    nodes = items(hmctl, "nodes")
    alpha = nodes["alpha"]["status"]
    members = asyncio.run(
        h3_get_json(
            alpha["address"], "/network/v1/members", expected_id=alpha["identity"], identity=None
        )
    )["members"]
    known = {m["identity"]: m for m in members}
    for name in ("alpha", "beta", "registry"):
        assert nodes[name]["status"]["identity"] in known, name
        assert (
            known[nodes[name]["status"]["identity"]]["address"] == nodes[name]["status"]["address"]
        )
    assert known[nodes["registry"]["status"]["identity"]]["roles"] == ["registry"]


def test_a_revoked_key_sends_nothing(hmctl: Hmctl, applied: Path) -> None:
    nodes = {name: item["status"] for name, item in items(hmctl, "nodes").items()}
    alpha = nodes["alpha"]
    beta_key = load_identity(hmctl.state / "nodes" / "beta" / "identity.key")
    before = hmctl("message", "send", "beta", "alpha", "--text", "before", "-o", "json")
    assert before.returncode == 0, before.stdout + before.stderr

    revoked = hmctl("registry", "revoke", "beta", "--reason", "laptop stolen")
    assert revoked.returncode == 0, revoked.stderr
    wait_for(lambda: _private_status(alpha, beta_key) == 403)  # the revocation reached alpha
    size = _chain_size(alpha)

    # Through beta's node, which proves beta's key to alpha: refused.
    after = hmctl("message", "send", "beta", "alpha", "--text", "after")
    assert after.returncode != 0 and "revoked" in after.stdout + after.stderr
    # Sealed and signed with beta's key but carried by an anonymous client, so no gate sees
    # beta's key: the inbox itself refuses what the revoked key signed.
    status, error = asyncio.run(_deliver_anonymously(alpha, beta_key, b"after, anonymously"))
    assert status == 403 and f"the key {beta_key.node_id} was revoked" in error
    assert _chain_size(alpha) == size  # no receipt for either
    inbox = json.loads(hmctl("message", "inbox", "alpha", "-o", "json").stdout)
    assert [m["text"] for m in inbox] == ["before"]


def _private_status(node: dict[str, str], key: Identity) -> int:
    async def run() -> int:
        status, _, _ = await h3_get(
            node["privateAddress"], "/status", expected_id=node["identity"], identity=key
        )
        return status

    try:
        return asyncio.run(run())
    except AccessDenied:  # a refused certificate ends the handshake instead
        return 403


def _chain_size(node: dict[str, str]) -> int:
    head = asyncio.run(
        h3_get_json(node["address"], "/chain/v1/head", expected_id=node["identity"], identity=None)
    )
    return int(head["size"])


async def _deliver_anonymously(
    node: dict[str, str], sender: Identity, text: bytes
) -> tuple[int, str]:
    address, pin = node["address"], node["identity"]
    card = await h3_get_json(address, "/message/v1/key", expected_id=pin, identity=None)
    block = Ref(sender.public_key_bytes, 0, bytes(32))
    sealed = seal(
        sender, pin, check_card(card, pin), text, block, message_id=b"\7" * 16, timestamp_ms=1
    )
    async with asyncio.timeout(10), connect_h3(address, expected_id=pin, identity=None) as h3:
        status, _, answer = await h3.request(
            "POST",
            "/message/v1/inbox",
            headers=[("content-type", "application/octet-stream")],
            body=sealed,
        )
    return status, json.loads(answer).get("error", "")
