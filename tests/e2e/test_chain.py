"""Each node's chain through `hmctl chain` against nodes started by `hmctl apply`: appends
signed by the node's own key, a log, a whole-chain verification, proofs checked on arrival;
another key's append refused with nothing stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hypermesh.chain.client import ChainClient
from hypermesh.errors import TransportError
from hypermesh.transport.identity import load_or_create_identity
from tests.conftest import Hmctl
from tests.e2e.conftest import items


def test_chain_append_log_verify_and_prove(hmctl: Hmctl, applied: Path) -> None:
    for text in ("first", "second", "third"):
        done = hmctl("chain", "append", "alpha", "--text", text)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("block ")
    shown = hmctl("chain", "log", "alpha")
    assert shown.returncode == 0, shown.stderr
    assert "third" in shown.stdout.splitlines()[1] and "# 3 blocks" in shown.stdout

    block = json.loads(hmctl("chain", "show", "alpha", "1").stdout)
    assert block["seq"] == 1 and block["kind"] == "note"
    link = f"{block['author']}:1:{block['hash']}"
    linked = hmctl("chain", "append", "beta", "--kind", "link", "--link", link)
    assert linked.returncode == 0, linked.stderr

    verified = hmctl("chain", "verify", "alpha")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified: 3 blocks" in verified.stdout and "3 payloads checked" in verified.stdout
    proof = hmctl("chain", "proof", "alpha", "1", "--size", "3")
    assert proof.returncode == 0 and "verified: block 1 is in the tree of 3 blocks" in proof.stdout
    prefix = hmctl("chain", "proof", "alpha", "3", "--consistency", "2")
    assert prefix.returncode == 0, prefix.stdout + prefix.stderr

    # Only the node itself appends to its chain.
    alpha = items(hmctl, "nodes")["alpha"]["status"]
    client = ChainClient(alpha["address"], alpha["identity"])
    stranger = load_or_create_identity(hmctl.state / "nodes" / "beta")
    with pytest.raises(TransportError, match="append refused \\(403\\)"):
        asyncio.run(client.append(stranger, "note", b"forged"))
    assert asyncio.run(client.head())["size"] == 3
