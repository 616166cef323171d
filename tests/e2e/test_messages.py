"""Messages between nodes started by `hmctl apply`: delivered end to end encrypted, receipts on
both chains linking to each other, and a message tampered in transit refused with nothing
stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypermesh.transport.client import connect_h3
from tests.conftest import Hmctl
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
