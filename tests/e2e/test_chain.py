"""Each node's chain through `hmctl chain` against nodes started by `hmctl apply`: appends
signed by the node's own key, a log, a whole-chain verification, proofs checked on arrival;
another key's append refused with nothing stored."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from hypermesh.chain.client import ChainClient
from hypermesh.errors import TransportError
from hypermesh.transport.client import h3_get_json
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
    client = ChainClient(alpha["address"], alpha["identity"], caller=None)
    stranger = load_or_create_identity(hmctl.state / "nodes" / "beta")
    with pytest.raises(TransportError, match="append refused \\(403\\)"):
        asyncio.run(client.append(stranger, "note", b"forged"))
    assert asyncio.run(client.head())["size"] == 3

    # A payload altered on the node's disk is a failed verification like any other: exit 1.
    with sqlite3.connect(hmctl.state / "nodes" / "alpha" / "chain.db") as db:
        db.execute("UPDATE payloads SET data = ? WHERE data = ?", (b"forged", b"second"))
    tampered = hmctl("chain", "verify", "alpha")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "FAILED: chain of alpha: block 1: the payload does not match" in tampered.stdout


def _followed(hmctl: Hmctl, node: str) -> dict[str, dict[str, object]]:
    status = items(hmctl, "nodes")[node]["status"]
    data = asyncio.run(
        h3_get_json(
            status["address"], "/chain/v1/replicas", expected_id=status["identity"], identity=None
        )
    )
    return {c["author"]: c for c in data["chains"]}


def test_linked_chains_are_followed_and_a_lost_chain_comes_back(
    hmctl: Hmctl, applied: Path
) -> None:
    for text in ("one", "two", "three"):
        assert hmctl("chain", "append", "alpha", "--text", text).returncode == 0
    nodes = items(hmctl, "nodes")
    alpha = nodes["alpha"]["status"]
    top = json.loads(hmctl("chain", "show", "alpha", "2").stdout)
    link = f"{alpha['identity']}:2:{top['hash']}"
    assert hmctl("chain", "append", "beta", "--kind", "link", "--link", link).returncode == 0

    # beta now follows alpha's chain, every block checked on the way in.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        followed = _followed(hmctl, "beta").get(alpha["identity"])
        if followed and followed["size"] == 3:
            break
        time.sleep(0.2)
    assert followed == {**followed, "size": 3, "forkedAt": None}

    # beta's link block had seen alpha's first block: a bundle proves it, checked offline.
    bundle = applied / "provenance.json"
    made = hmctl(
        "chain",
        "provenance",
        "beta",
        "0",
        "--origin",
        f"{alpha['identity']}:0",
        "--out",
        str(bundle),
    )
    assert made.returncode == 0, made.stdout + made.stderr
    offline = hmctl("chain", "verify", "--bundle", str(bundle))
    assert offline.returncode == 0 and "had seen block 0 of" in offline.stdout
    data = json.loads(bundle.read_text())
    assert [s["via"] for s in data["steps"]] == ["link", "history"]
    data["steps"][1]["proof"][0] = "00" * 32
    bundle.write_text(json.dumps(data))
    forged = hmctl("chain", "verify", "--bundle", str(bundle))
    assert forged.returncode == 1 and "inclusion proof does not verify" in forged.stdout

    # alpha loses its chain (a disk replaced); on its next start it takes its blocks back
    # from beta before signing anything, so block 3 follows block 2 instead of forking at 0.
    os.kill(int(alpha["pid"]), signal.SIGTERM)
    node_dir = hmctl.state / "nodes" / "alpha"
    deadline = time.monotonic() + 10
    while (node_dir / "runtime.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    for name in ("chain.db", "chain.db-wal", "chain.db-shm"):
        (node_dir / name).unlink(missing_ok=True)
    again = hmctl("apply", "-f", str(applied), "--timeout", "60s")
    assert "alpha" in again.stdout, again.stdout + again.stderr
    appended = hmctl("chain", "append", "alpha", "--text", "after the loss")
    assert appended.returncode == 0, appended.stderr
    assert appended.stdout.startswith("block 3 appended")
    verified = hmctl("chain", "verify", "alpha")
    assert verified.returncode == 0 and "verified: 4 blocks" in verified.stdout
    time.sleep(2.5)  # a round of following
    assert _followed(hmctl, "beta")[alpha["identity"]]["forkedAt"] is None


def test_checkpoints_are_witnessed_by_peers(hmctl: Hmctl, applied: Path) -> None:
    for text in ("one", "two", "three"):
        assert hmctl("chain", "append", "alpha", "--text", text).returncode == 0
    alpha = items(hmctl, "nodes")["alpha"]["status"]
    client = ChainClient(alpha["address"], alpha["identity"], caller=None)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        checkpoint = asyncio.run(client.checkpoint())
        if checkpoint["size"] == 2 and checkpoint["cosignatures"]:
            break
        time.sleep(0.3)
    assert checkpoint["cosignatures"], checkpoint
    witnessed = hmctl("chain", "verify", "alpha", "--witnesses", "1")
    assert witnessed.returncode == 0, witnessed.stdout + witnessed.stderr
    assert "witnessed: " in witnessed.stdout
    too_many = hmctl("chain", "verify", "alpha", "--witnesses", "3")
    assert too_many.returncode == 1 and "of the 3 witnesses required" in too_many.stdout
