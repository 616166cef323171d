"""The private interface of nodes started by `hmctl apply`: only members of the network get
past the handshake's identity, and only for what the private InterfacePolicy allows; an
anonymous, unknown or denied caller is refused before any handler runs, nothing stored."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import dns.message
import pytest

from hypermesh.chain.client import ChainClient
from hypermesh.errors import TransportError
from hypermesh.transport.client import connect_h3
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity, load_or_create_identity
from tests import conftest as c
from tests.conftest import EXAMPLES, Hmctl
from tests.e2e.conftest import items

PARTNER = Identity.generate()


@pytest.fixture
def acme(hmctl: Hmctl, tmp_path: Path) -> dict[str, dict[str, Any]]:
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLES / "registry-and-names", folder)
    manifest = folder / "network.yaml"
    text = manifest.read_text()
    made_up = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"
    manifest.write_text(text.replace(made_up, PARTNER.node_id))  # we hold the partner's key
    hmctl("apply", "-f", str(folder), "--timeout", "60s")
    return {name: item["status"] for name, item in items(hmctl, "nodes").items()}


async def call(node: dict[str, Any], key: Identity | None, method: str, path: str) -> int:
    async with (
        asyncio.timeout(10),
        connect_h3(node["privateAddress"], expected_id=node["identity"], identity=key) as h3,
    ):
        status, _, _ = await h3.request(method, path, body=b"{}" if method == "POST" else b"")
    return status


def test_only_members_get_in_and_only_for_what_the_policy_allows(
    hmctl: Hmctl, acme: dict[str, dict[str, Any]]
) -> None:
    alpha, beta = acme["alpha"], acme["beta"]
    assert alpha["privateAddress"] and alpha["privateAddress"] != alpha["address"]
    staff = load_or_create_identity(hmctl.state / "nodes" / "beta")
    assert asyncio.run(call(alpha, staff, "GET", "/status")) == 200  # staff-everything
    assert asyncio.run(call(alpha, None, "GET", "/status")) == 403  # anonymous
    assert asyncio.run(call(alpha, Identity.generate(), "GET", "/status")) == 403  # stranger

    # The partner (a Peer): chain.read on nodes tagged web only, never chain.write.
    assert asyncio.run(call(alpha, PARTNER, "GET", "/chain/v1/head")) == 200
    assert asyncio.run(call(beta, PARTNER, "GET", "/chain/v1/head")) == 403  # beta is not web
    chain = ChainClient(alpha["address"], alpha["identity"], caller=None)
    size = asyncio.run(chain.head())["size"]
    assert asyncio.run(call(alpha, PARTNER, "POST", "/chain/v1/append")) == 403
    assert asyncio.run(call(alpha, PARTNER, "GET", "/message/v1/inbox")) == 403
    assert asyncio.run(chain.head())["size"] == size  # nothing of theirs was stored

    # DNS over QUIC on the private interface: the partner may query alpha; a stranger gets
    # no answer at all.
    query = dns.message.make_query("www.acme.", "A").to_wire()

    async def ask(key: Identity) -> bytes:
        from hypermesh.transport.client import connect_pinned
        from hypermesh.transport.dns_client import DoqClientProtocol

        async with (
            asyncio.timeout(10),
            connect_pinned(
                alpha["privateAddress"],
                expected_id=alpha["identity"],
                protocol=DoqClientProtocol,
                alpn="doq",
                identity=key,
            ) as doq,
        ):
            return await doq.query(query)

    answer = dns.message.from_wire(asyncio.run(ask(PARTNER)))
    assert answer.rcode() == 0
    with pytest.raises((TransportError, TimeoutError)):
        asyncio.run(ask(Identity.generate()))
    # The public interface is open, as before.
    public = dns.message.from_wire(
        asyncio.run(
            doq_query(alpha["address"], query, expected_id=alpha["identity"], identity=None)
        )
    )
    assert public.rcode() == 0


PUBLIC_POLICY = """\
apiVersion: hypermesh.online/v1alpha1
kind: InterfacePolicy
metadata: {name: demo-public}
spec:
  network: demo
  interface: public
  default: deny
  rules:
    - name: anyone-reads-status
      operations: [status.read, dns.query]
      rateLimit: {requests: 3, per: 1m}
"""


def test_the_public_interface_limits_each_source(hmctl: Hmctl, tmp_path: Path) -> None:
    folder = tmp_path / "public"
    folder.mkdir()
    (folder / "net.yaml").write_text(
        c.documents(c.network(), c.node("n1", interfaces="[public]"), PUBLIC_POLICY)
    )
    hmctl("apply", "-f", str(folder), "--timeout", "60s")
    n1 = items(hmctl, "nodes")["n1"]["status"]

    async def get(path: str) -> int:
        async with (
            asyncio.timeout(10),
            connect_h3(n1["address"], expected_id=n1["identity"], identity=None) as h3,
        ):
            status, _, _ = await h3.request("GET", path)
        return status

    assert [asyncio.run(get("/status")) for _ in range(4)] == [200, 200, 200, 429]
    assert asyncio.run(get("/chain/v1/head")) == 403  # chain.read is not allowed publicly
    # The controller observes with the node's own key: never limited, the node stays Ready.
    again = items(hmctl, "nodes")["n1"]
    ready = next(c for c in again["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
