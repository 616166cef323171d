"""The directory feature: the node's record, its addresses and seq, published to the registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypermesh.dns.source import StaticZones
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.follower import Follower
from hypermesh.node.features.directory import next_seq
from hypermesh.node.features.registry import REGISTRY_ADMIN_DIR
from hypermesh.node.hostaddresses import expand_wildcard, is_wildcard
from hypermesh.node.interfaces import PrivateGate
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.client import h3_get
from hypermesh.transport.identity import Identity, load_or_create_identity
from hypermesh.transport.noderecord import NodeRecord
from tests.harness import directory
from tests.harness.node_process import NodeStarter
from tests.harness.nodes import wait_for

HOST = ["127.0.0.1", "192.0.2.2", "fd00::2", "fe80::1", "::1", "198.18.1.3"]


def test_a_wildcard_host_stands_for_the_hosts_non_loopback_addresses() -> None:
    assert expand_wildcard("0.0.0.0:4433", lambda: HOST) == ["192.0.2.2:4433", "198.18.1.3:4433"]
    assert expand_wildcard("[::]:4433", lambda: HOST) == [
        "192.0.2.2:4433",
        "198.18.1.3:4433",
        "[fd00::2]:4433",
    ]
    # a concrete host is published as it is bound
    assert expand_wildcard("127.0.0.1:4433", lambda: HOST) == ["127.0.0.1:4433"]
    assert expand_wildcard("[::1]:9", lambda: HOST) == ["[::1]:9"]
    # loopback only when the host has nothing else (link-local addresses are not dialable)
    assert expand_wildcard("0.0.0.0:1", lambda: ["127.0.0.1", "fe80::1"]) == ["127.0.0.1:1"]
    assert expand_wildcard("[::]:1", lambda: ["::1"]) == ["[::1]:1"]
    assert is_wildcard("::") and is_wildcard("0.0.0.0") and not is_wildcard("node.example")


def test_seq_only_grows_across_restarts_and_clock_steps(tmp_path: Path) -> None:
    first = next_seq(tmp_path, 1000.0)
    assert first == 1_000_000
    assert next_seq(tmp_path, 1000.0) == first + 1  # same millisecond
    assert next_seq(tmp_path, 10.0) == first + 2  # the clock stepped back
    assert (tmp_path / "record.seq").read_text().strip() == str(first + 2)
    assert next_seq(tmp_path, 2000.0) == 2_000_000


def _follower_holding(members: dict[str, dict[str, object]], revoked: list[str]) -> Follower:
    """A mirror's follower that holds anchors the registry signed with these members."""
    registry = Identity.generate()
    follower = Follower(StaticZones(), lambda: None, identity=None)
    follower.state.anchors = Anchors.verify(
        Anchors.issue(
            registry,
            "acme",
            {},
            1.0,
            revoked={k: {"at": 1.0, "reason": "lost"} for k in revoked},
            members=members,
        ).signed,
        registry.node_id,
    )
    return follower


def test_members_named_only_in_the_anchors_are_admitted_on_the_private_interface() -> None:
    joined, gone, stranger = (Identity.generate().node_id for _ in range(3))
    follower = _follower_holding(
        {
            "delta": {"identity": joined, "kind": "Node", "tags": ["edge"]},
            "omega": {"identity": gone, "kind": "Node", "tags": []},
            "alpha": {"identity": stranger, "kind": "Node", "tags": []},  # the config's name
        },
        revoked=[gone],
    )
    assert follower.members() == {joined: "delta", gone: "omega", stranger: "alpha"}
    directory = {"alpha": {"kind": "Node", "identity": "hm1alpha", "tags": []}}
    gate = PrivateGate.of(
        "alpha", directory, None, follower.revoked, listed=follower.member_entries
    )
    assert gate.check(joined, "10.0.0.2:1", "chain.write") == (0, "")
    assert gate.named(joined) == "delta"
    status, why = gate.check(gone, "10.0.0.3:1", "status.read")
    assert status == 403 and "revoked" in why
    status, why = gate.check(Identity.generate().node_id, "10.0.0.4:1", "status.read")
    assert status == 403 and "not a member" in why
    # a name the config gives one key is not taken by another key in the anchors
    status, why = gate.check(stranger, "10.0.0.5:1", "status.read")
    assert status == 403 and "not a member" in why
    # policies see the anchors' tags
    policy = {"default": "deny", "rules": [{"from": {"tags": ["edge"]}, "operations": ["*"]}]}
    ruled = PrivateGate.of("alpha", directory, policy, listed=follower.member_entries)
    assert ruled.check(joined, "10.0.0.2:1", "dns.query") == (0, "")


def test_no_anchors_no_members_from_them() -> None:
    follower = Follower(StaticZones(), lambda: None, identity=None)
    assert follower.members() == {}
    gate = PrivateGate.of("alpha", {}, None, listed=follower.member_entries)
    assert gate.check(Identity.generate().node_id, "10.0.0.2:1", "status.read")[0] == 403


def test_a_node_publishes_its_record_to_the_registry_and_again_before_it_expires(
    nodes: NodeStarter,
) -> None:
    registry = directory.start(nodes, "registry", roles=("registry",), members=("gamma",))
    gamma = directory.start(nodes, "gamma", registry="registry", record_lifetime=4)
    record = directory.wait_record(registry, gamma.identity)
    assert record.name == "gamma" and record.network == "acme"
    assert record.addresses == (gamma.address,)  # a concrete host: the bound address
    assert record.expires_at - record.issued_at == 4
    # re-published at half its lifetime, with a higher seq
    later = wait_for(
        lambda: (r := directory.wait_record(registry, gamma.identity)).seq > record.seq and r,
        what="a newer record",
    )
    assert later.issued_at > record.issued_at
    assert int((gamma.node_dir / "record.seq").read_text()) >= later.seq
    # the registry publishes its own record to itself; looked up by name too
    assert directory.wait_record(registry, registry.identity).name == "registry"
    status, data = directory.lookup(registry, "name=gamma")
    assert status == 200 and NodeRecord.verify(data).node_id == gamma.identity
    assert "node record published" in gamma.log_file.read_text()


def test_a_node_the_registry_does_not_know_is_refused_and_keeps_trying(
    nodes: NodeStarter,
) -> None:
    registry = directory.start(nodes, "registry", roles=("registry",))
    stranger = directory.start(nodes, "stranger", registry="registry", record_lifetime=4)
    wait_for(
        lambda: "node record not published" in stranger.log_file.read_text(),
        what="the refusal in the log",
    )
    status, _ = directory.lookup(registry, f"id={stranger.identity}")
    assert status == 404
    assert "not a member" in stranger.log_file.read_text()


def test_advertised_addresses_replace_the_bound_one(nodes: NodeStarter) -> None:
    registry = directory.start(nodes, "registry", roles=("registry",), members=("gamma",))
    advertise = ("198.18.1.3:4433", "[2001:db8::3]:4433")
    gamma = directory.start(
        nodes, "gamma", registry="registry", advertise=advertise, private_listen="127.0.0.1:0"
    )
    record = directory.wait_record(registry, gamma.identity)
    assert record.addresses == advertise
    assert record.interfaces["private"] == (gamma.runtime["private"],)


def test_a_member_known_only_from_the_anchors_gets_in_on_a_mirrors_private_interface(
    nodes: NodeStarter,
) -> None:
    delta = directory.make_key(nodes.base, "delta")  # a member at the registry alone
    directory.start(nodes, "registry", roles=("registry",), members=("alpha", "delta"))
    alpha = directory.start(
        nodes, "alpha", registry="registry", private_listen="127.0.0.1:0"
    )  # its own config names no delta
    private = str(alpha.runtime["private"])

    def status_as(key: Identity) -> int:
        status, _, _ = asyncio.run(
            h3_get(private, "/status", expected_id=alpha.identity, identity=key)
        )
        return status

    assert wait_for(lambda: status_as(delta) == 200, what="delta admitted from the anchors")
    assert status_as(Identity.generate()) == 403  # a stranger is refused
    assert status_as(directory.make_key(nodes.base, "registry")) == 200  # a static member


def test_a_key_that_joined_with_a_token_gets_in_on_the_registrys_own_private_interface(
    nodes: NodeStarter,
) -> None:
    registry = directory.start(nodes, "registry", roles=("registry",), private_listen="127.0.0.1:0")
    private = str(registry.runtime["private"])
    admin = load_or_create_identity(nodes.base / "registry" / REGISTRY_ADMIN_DIR)
    client = RegistryClient(registry.address, registry.identity, identity=None, timeout=10.0)
    status, made = asyncio.run(
        client.call("POST", "/registry/v1/tokens", {"ttl": 600}, signer=admin)
    )
    assert status == 201, made
    joiner = Identity.generate()

    def status_as(key: Identity) -> int:
        answer, _, _ = asyncio.run(
            h3_get(private, "/status", expected_id=registry.identity, identity=key)
        )
        return answer

    assert status_as(joiner) == 403  # not a member yet
    body = {"token": made["token"], "name": "late", "host": None}
    status, joined = asyncio.run(client.call("POST", "/registry/v1/join", body, signer=joiner))
    assert status == 201, joined
    assert wait_for(lambda: status_as(joiner) == 200, what="the joined key admitted")
    assert status_as(Identity.generate()) == 403  # a stranger still is not
