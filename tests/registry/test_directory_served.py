"""The node directory of a live registry node, over its API and in DNS: a node joins with a
token, publishes its record, which any DNS client then finds by key at ``<id>._nodes.`` over
DoQ (the TXT record verifies as the node's own word) and which a mirror is pushed; a record of
a few seconds leaves when it expires, a revoked key's record at once."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype
import pytest

from hypermesh.node.config import Upstream
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity, load_or_create_identity
from hypermesh.transport.noderecord import NodeRecord, directory_name
from tests.harness.nodes import NodeProc, start_node, wait_for


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes: dict[str, NodeProc] = {}
    try:
        nodes["registry"] = start_node(tmp_path, "registry", roles=("registry",))
        upstream = Upstream(PeerRef(nodes["registry"].address, nodes["registry"].identity))
        nodes["m1"] = start_node(tmp_path, "m1", registry=upstream)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


class Api:
    def __init__(self, registry: NodeProc) -> None:
        self.client = RegistryClient(registry.address, registry.identity, identity=None)
        self.admin = load_or_create_identity(registry.node_dir / "registry-admin")

    def call(
        self, method: str, path: str, body: Any = None, signer: Identity | None = None
    ) -> tuple[int, dict[str, Any]]:
        return asyncio.run(self.client.call(method, f"/registry/v1/{path}", body, signer=signer))


def txt_record(node: NodeProc, node_id: str) -> NodeRecord | None:
    answer = node.ask(directory_name(node_id), "TXT")
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            return NodeRecord.from_txt([s for r in rrset for s in r.strings], now=time.time())
    return None


def test_join_publish_find_by_key_expire_and_withdraw(network: dict[str, NodeProc]) -> None:
    registry = network["registry"]
    api = Api(registry)
    status, made = api.call("POST", "tokens", {"ttl": 600, "tags": ["web"]}, api.admin)
    assert status == 201 and made["token"].startswith(f"hmjoin-{made['id']}-")
    token = made["token"]
    node, other = Identity.generate(), Identity.generate()
    join = {"token": token, "name": "alpha", "host": "b"}
    status, joined = api.call("POST", "join", join, node)
    assert status == 201 and joined["member"]["identity"] == node.node_id
    assert api.call("POST", "join", join, node) == (200, joined)
    status, refused = api.call("POST", "join", {**join, "name": "beta"}, other)
    assert (status, refused["code"]) == (403, "token_refused")
    assert "already used" in refused["error"]
    status, listed = api.call("POST", "tokens/list", {}, api.admin)
    assert listed["items"][0]["uses"] == 1 and token not in str(listed)
    assert api.call("POST", "tokens/list", {}, other)[0] == 403

    check_records(registry, network["m1"], api, node, other)


def check_records(
    registry: NodeProc, mirror: NodeProc, api: Api, node: Identity, other: Identity
) -> None:
    """``node`` (a member) and ``other`` (not one) publish; found, expired, withdrawn."""
    # A stranger's record is refused; the member's is stored and found by key and name.
    stranger = NodeRecord.issue(
        other,
        network="acme",
        name="x",
        interfaces={"public": ["127.0.0.1:1"]},
        issued_at=time.time(),
        seq=1,
    )
    assert api.call("POST", "nodes", stranger.to_json())[0] == 403
    mine = NodeRecord.issue(
        node,
        network="acme",
        name="alpha",
        interfaces={"public": ["127.0.0.1:4433"]},
        issued_at=time.time(),
        lifetime=600,
        seq=1,
    )
    status, stored = api.call("POST", "nodes", mine.to_json())
    assert status == 200 and stored["stored"] is True
    status, stale = api.call("POST", "nodes", mine.to_json())
    assert (status, stale["code"]) == (409, "stale")
    assert api.call("GET", f"node?id={node.node_id}") == (200, mine.to_json())
    assert api.call("GET", "node?name=alpha") == (200, mine.to_json())
    status, page = api.call("GET", "nodes?limit=1000")
    assert mine.to_json() in page["items"] and page["next"] is None
    assert api.call("GET", "nodes?limit=0")[0] == 400

    # In DNS, at the registry and (pushed) at the mirror.
    found = txt_record(registry, node.node_id)
    assert found is not None and found.node_id == node.node_id and found.seq == 1
    a = registry.ask(directory_name(node.node_id), "A")
    assert {r.to_text() for rrset in a.answer for r in rrset} == {"127.0.0.1"}
    wait_for(lambda: txt_record(mirror, node.node_id), what="the mirror to serve the record")

    # A short-lived record leaves when it expires; a revoked key's record at once.
    brief = NodeRecord.issue(
        node,
        network="acme",
        name="alpha",
        interfaces={"public": ["127.0.0.1:4433"]},
        issued_at=time.time(),
        lifetime=4,
        seq=2,
    )
    assert api.call("POST", "nodes", brief.to_json())[0] == 200
    query = urllib.parse.urlencode({"id": node.node_id})
    wait_for(
        lambda: registry.ask(directory_name(node.node_id), "TXT").rcode() == dns.rcode.NXDOMAIN,
        timeout=15,
        what="the expired record to leave the zone",
    )
    assert api.call("GET", f"node?{query}")[0] == 404
    wait_for(
        lambda: mirror.ask(directory_name(node.node_id), "TXT").rcode() == dns.rcode.NXDOMAIN,
        what="the mirror to drop the expired record",
    )
    again = NodeRecord.issue(
        node,
        network="acme",
        name="alpha",
        interfaces={"public": ["127.0.0.1:4433"]},
        issued_at=time.time(),
        lifetime=600,
        seq=3,
    )
    assert api.call("POST", "nodes", again.to_json())[0] == 200
    assert api.call("POST", "revoke", {"nodeId": node.node_id}, api.admin)[0] == 200
    assert api.call("GET", f"node?{query}")[0] == 404
    assert registry.ask(directory_name(node.node_id), "TXT").rcode() == dns.rcode.NXDOMAIN
