"""One network over two hosts, each with its own controller and state (on loopback): each
starts only the Nodes placed on it; the registry host's controller runs the registry; a node
of the other host joins by token (a revoked token refused first, its secret in no output, file
or status), another by its pinned identity; a pinned identity the local key does not match is
refused with nothing started; ``hmctl keys show`` and ``hmctl network token``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from hypermesh.transport.identity import load_identity
from tests.conftest import HEADER, Hmctl, node_processes, wait_for
from tests.harness.proc import free_udp_port

OTHER_ID = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"


def node(name: str, *lines: str) -> str:
    body = "".join(f"  {line}\n" for line in lines)
    return f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\nspec:\n  network: acme\n{body}"


def manifest(registry_id: str, gamma_id: str, port: int) -> str:
    network = (
        f"{HEADER}kind: Network\nmetadata: {{name: acme}}\n"
        "spec: {mode: private, registry: {node: registry}}\n"
    )
    return "---\n".join(
        [
            network,
            node(
                "registry",
                "host: a",
                f"identity: {registry_id}",
                "roles: [registry]",
                f'listen: "127.0.0.1:{port}"',
            ),
            node("alpha", "host: a", "interfaces: [public, private]"),
            node("beta", "host: b", "interfaces: [public, private]"),
            node("gamma", "host: b", f"identity: {gamma_id}", "interfaces: [public, private]"),
        ]
    )


def items(hmctl: Hmctl, *args: str) -> dict[str, dict[str, Any]]:
    result = hmctl("get", "nodes", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return {i["metadata"]["name"]: i for i in json.loads(result.stdout)["items"]}


def ready(item: dict[str, Any]) -> tuple[str, str, str]:
    (cond,) = [c for c in item["status"]["conditions"] if c["type"] == "Ready"]
    return cond["status"], cond["reason"], cond.get("message", "")


def files_containing(root: Path, secret: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and secret.encode() in path.read_bytes():
            found.append(path)
    return found


def test_two_hosts_each_converge_their_share(hosts: tuple[Hmctl, Hmctl], tmp_path: Path) -> None:
    a, b = hosts
    registry_id = a("keys", "show", "registry").stdout.strip()
    gamma_id = b("keys", "show", "gamma").stdout.strip()
    path = tmp_path / "acme.yaml"
    path.write_text(manifest(registry_id, gamma_id, free_udp_port()))

    on_a = a("apply", "-f", str(path), "--host", "a", "--timeout", "60s")
    assert on_a.returncode == 0, on_a.stdout + on_a.stderr
    assert len(node_processes(a.state)) == 2  # registry and alpha, not beta nor gamma
    seen = items(a, "--host", "a")
    assert ready(seen["beta"])[:2] == ("True", "Remote")
    assert "runs on host b" in ready(seen["beta"])[2]
    assert "pid" not in seen["gamma"]["status"]

    # A revoked token is refused: beta is not started, the token is nowhere.
    revoked = a("network", "token", "create", "--ttl", "1h")
    assert revoked.returncode == 0, revoked.stderr
    listed = json.loads(a("network", "token", "list", "-o", "json").stdout)["items"]
    assert a("network", "token", "revoke", listed[0]["id"]).returncode == 0
    bad = tmp_path / "revoked.token"
    bad.write_text(revoked.stdout)
    refused = b("apply", "-f", str(path), "--host", "b", "--join-token-file", str(bad))
    assert refused.returncode != 0
    status, reason, message = ready(items(b, "--host", "b")["beta"])
    assert (status, reason) == ("False", "JoinRefused") and "revoked" in message, message
    secret = revoked.stdout.strip()
    assert secret not in refused.stdout + refused.stderr + message
    assert not (b.state / "nodes" / "beta" / "joined.json").exists()

    # A fresh single-use token: printed once, alone; list never shows it.
    created = a("network", "token", "create", "--ttl", "1h", "--tags", "edge")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout.count("\n") == 1 and token.startswith("hmjoin-")
    assert token not in created.stderr
    good = tmp_path / "join.token"
    good.write_text(token + "\n")
    on_b = b("apply", "-f", str(path), "--host", "b", "--join-token-file", str(good))
    assert on_b.returncode == 0, on_b.stdout + on_b.stderr
    assert len(node_processes(b.state)) == 2  # beta and gamma
    joined = json.loads((b.state / "nodes" / "beta" / "joined.json").read_text())
    assert joined["registry"] == registry_id and joined["member"]["name"] == "beta"
    assert not (b.state / "nodes" / "gamma" / "joined.json").exists()  # pinned: no join
    assert not (b.state / "nodes" / "alpha").exists()  # remote: no key made for it here
    listing = a("network", "token", "list")
    assert listing.returncode == 0 and token not in listing.stdout
    used = json.loads(a("network", "token", "list", "-o", "json").stdout)["items"]
    assert sorted(i["uses"] for i in used) == [0, 1]
    for root in (a.state, b.state):
        assert not files_containing(root, token.split("-")[-1])
        assert not files_containing(root, secret.split("-")[-1])

    # Host b's controller reaches host a's registry; host a sees b's nodes in the directory.
    def directory_shows_beta() -> dict[str, Any] | None:
        status = items(a, "--host", "a")["beta"]["status"]
        return status if status.get("address") else None

    remote = wait_for(directory_shows_beta, timeout=45)
    assert isinstance(remote, dict) and remote["host"] == "b" and "recordAge" in remote
    table = a("get", "nodes", "--host", "a")
    assert "HOST" in table.stdout and "RECORD AGE" in table.stdout

    # From host b, whose state holds no registry, a node of its own looks the key up.
    pinged = b("ping", registry_id, "-c", "2", "--timeout", "10")
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    assert pinged.stdout.startswith("registry (") and " direct " in pinged.stdout


def test_a_pinned_identity_the_key_does_not_match_is_refused(
    hosts: tuple[Hmctl, Hmctl], tmp_path: Path
) -> None:
    a, _ = hosts
    path = tmp_path / "pinned.yaml"
    network = f"{HEADER}kind: Network\nmetadata: {{name: acme}}\nspec: {{mode: private}}\n"
    path.write_text("---\n".join([network, node("edge", f"identity: {OTHER_ID}")]))
    result = a("apply", "-f", str(path), "--timeout", "20s")
    assert result.returncode != 0
    status, reason, message = ready(items(a)["edge"])
    actual = (a.state / "nodes" / "edge" / "identity.pub").read_text().strip()
    assert (status, reason) == ("False", "IdentityMismatch")
    assert OTHER_ID in message and actual in message and "Node/edge" in message
    assert not node_processes(a.state)


def test_keys_show_makes_the_key_once(hosts: tuple[Hmctl, Hmctl]) -> None:
    a, _ = hosts
    first = a("keys", "show", "edge")
    assert first.returncode == 0, first.stderr
    key = a.state / "nodes" / "edge" / "identity.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    shown = json.loads(a("keys", "show", "edge", "-o", "json").stdout)
    assert shown["identity"] == first.stdout.strip() and shown["created"] is False
    assert (key.parent / "identity.pub").read_text().strip() == shown["identity"]
    # the DNS-over-TLS pin (RFC 7858): SHA-256 of the key's SubjectPublicKeyInfo, in base64
    spki = (
        load_identity(key)
        .private_key.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert shown["spkiPin"] == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert a("keys", "show", "../x").returncode == 2
