"""Federated networks: the members of a network that another one federates with — as that
network's registry vouches for them in its signed anchors — get past the private interface,
and the InterfacePolicy decides what they may do; members of networks that are not federated,
and keys the federated registry revoked, are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypermesh.errors import TransportError
from hypermesh.transport.client import h3_get
from hypermesh.transport.identity import Identity, load_identity
from tests import conftest as c
from tests.conftest import Hmctl, wait_for
from tests.e2e.conftest import items


def network(name: str, registry: str, extra: str = "") -> str:
    return (
        f"{c.HEADER}kind: Network\nmetadata: {{name: {name}}}\n"
        f"spec:\n  mode: private\n  registry: {{node: {registry}}}\n{extra}"
    )


POLICY = c.manifest(
    """
    apiVersion: hypermesh.online/v1alpha1
    kind: InterfacePolicy
    metadata: {name: acme-private}
    spec:
      network: acme
      interface: private
      rules:
        - name: partners-read
          from: {networks: [partners]}
          operations: [chain.read]
        - name: members
          from: {nodes: [acme-registry, alpha]}
          operations: ["*"]
      tests:
        - {from: partners/pnode, to: alpha, operation: chain.read, expect: allow}
        - {from: partners/pnode, to: alpha, operation: status.read, expect: deny}
    """
)

MANIFEST = c.documents(
    network("acme", "acme-registry", "  federation:\n    - {name: partners, network: partners}\n"),
    network("partners", "p-registry"),
    network("other", "o-registry"),
    c.node("acme-registry", network="acme", roles="[registry]", interfaces="[public]"),
    c.node("alpha", network="acme", interfaces="[public, private]"),
    c.node("p-registry", network="partners", roles="[registry]", interfaces="[public]"),
    c.node("pnode", network="partners", interfaces="[public]"),
    c.node("o-registry", network="other", roles="[registry]", interfaces="[public]"),
    c.node("onode", network="other", interfaces="[public]"),
    POLICY,
)


def private_get(node: dict[str, Any], key: Identity, path: str) -> tuple[int, str]:
    async def run() -> tuple[int, str]:
        status, _, body = await h3_get(
            node["privateAddress"], path, expected_id=node["identity"], identity=key
        )
        return status, body.decode()

    try:
        return asyncio.run(run())
    except TransportError as exc:
        return 0, str(exc)


def test_members_of_a_federated_network_get_in_as_the_policy_says(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    manifest = tmp_path / "federation.yaml"
    manifest.write_text(MANIFEST)
    result = hmctl("apply", "-f", str(manifest), "--timeout", "90s")
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = {name: item["status"] for name, item in items(hmctl, "nodes").items()}
    alpha = nodes["alpha"]
    pnode = load_identity(hmctl.state / "nodes" / "pnode" / "identity.key")
    onode = load_identity(hmctl.state / "nodes" / "onode" / "identity.key")

    # partners' registry vouches for pnode: chain.read is allowed, status.read is not.
    assert wait_for(lambda: private_get(alpha, pnode, "/chain/v1/head")[0] == 200)
    status, body = private_get(alpha, pnode, "/status")
    assert status == 403 and "status.read by partners/pnode" in body
    # A member of a network acme does not federate with is no member here.
    status, body = private_get(alpha, onode, "/chain/v1/head")
    assert status == 403 and "not a member" in body

    # partners revokes pnode's key: alpha stops admitting it at its next refresh.
    revoked = hmctl("registry", "revoke", "pnode", "--registry", "p-registry")
    assert revoked.returncode == 0, revoked.stderr
    refused = wait_for(lambda: (s := private_get(alpha, pnode, "/chain/v1/head"))[0] == 403 and s)
    assert "not a member" in refused[1]  # type: ignore[index]


def test_policies_may_only_name_networks_their_network_federates_with(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    bad = MANIFEST.replace("from: {networks: [partners]}", "from: {networks: [others]}").replace(
        "{from: partners/pnode, to: alpha, operation: status.read",
        "{from: nobody/pnode, to: alpha, operation: status.read",
    )
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(bad)
    result = hmctl("validate", "-f", str(manifest))
    assert result.returncode == 1
    assert "'others' is not a federated network of network 'acme'" in result.stderr
    assert "'nobody' is not a federated network" in result.stderr
    assert f"{manifest}:" in result.stderr  # file:line:col
    selfish = MANIFEST.replace("{name: partners, network: partners}", "{name: me, network: acme}")
    manifest.write_text(selfish)
    result = hmctl("validate", "-f", str(manifest))
    assert result.returncode == 1 and "cannot federate with itself" in result.stderr
