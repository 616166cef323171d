"""``hmctl get paths`` and ``hmctl ping`` through a local node (issue 17): a node's own view of
its paths (``GET /paths/v1``) read with its key and rendered as a table, a row per peer, and the
ping's path said. Real nodes on loopback (every path here is direct: no NAT between them); the
relayed rendering is checked on a parsed answer, as the lab's matrix covers relayed paths."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hypermesh.cli.paths import HEADERS, Answer, render_headers, render_rows
from hypermesh.cli.ping import describe
from hypermesh.cli.render import table
from hypermesh.sdk import BadPaths, Mesh, PathsView, PeerRef, Refused
from hypermesh.sdk.results import PingResult
from hypermesh.transport.identity import Identity, load_identity
from tests.cli.test_ping import NETWORK
from tests.conftest import Hmctl
from tests.harness import directory
from tests.harness.node_process import NodeStarter, RunningNode
from tests.harness.nodes import wait_for

NAT_KINDS = {"public", "endpoint-independent", "endpoint-dependent", "udp-blocked", "unknown"}


@dataclass
class Net:
    registry: RunningNode
    alpha: RunningNode
    beta: RunningNode
    base: Path

    def mesh(self, identity: Identity | None = None) -> Mesh:
        """A Mesh with alpha as its node, as alpha's own key unless ``identity``."""
        own = identity or load_identity(self.base / "alpha" / "identity.key")
        return Mesh(
            own,
            node=PeerRef(self.alpha.address, self.alpha.identity),
            registry=PeerRef(self.registry.address, self.registry.identity),
            timeout=10.0,
        )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("paths")
    starter = NodeStarter(base)
    try:
        registry = directory.start(
            starter, "registry", roles=("registry",), members=("alpha", "beta")
        )
        alpha = directory.start(starter, "alpha", registry="registry")
        beta = directory.start(starter, "beta", registry="registry")
        for node in (alpha, beta):
            directory.wait_record(registry, node.identity)
        yield Net(registry, alpha, beta, base)
    finally:
        starter.stop_all()


def test_a_node_pings_and_shows_the_direct_path_in_its_table(net: Net) -> None:
    async def go() -> PathsView:
        async with net.mesh() as mesh:
            result = await mesh.ping(net.beta.identity, 2)  # alpha's own key: alpha pings
            assert (result.node_id, result.path, result.relay) == (
                net.beta.identity,
                "direct",
                None,
            )
            assert result.address == net.beta.address and result.via == net.alpha.identity
            assert len(result.rtt_ms) == 2 and all(r > 0 for r in result.rtt_ms)
            return await mesh.paths()

    def beta_listed() -> PathsView | None:
        view = asyncio.run(go())
        return view if view.peer(net.beta.identity) is not None else None

    view = wait_for(beta_listed, what="beta among alpha's paths")
    assert view.node_id == net.alpha.identity and view.nat in NAT_KINDS
    peer = view.peer(net.beta.identity)
    assert peer is not None and peer.path == "direct" and peer.remote == net.beta.address
    names = {net.beta.identity: "beta"}
    answers = [Answer("alpha", view)]
    [header] = render_headers(answers, names)
    assert header.startswith(f"# alpha: nat {view.nat}, reflexive ")
    rows = render_rows(answers, names, wide=False)
    row = next(r for r in rows if r[1] in ("beta", peer.name))
    assert row[0] == "alpha" and row[2:5] == ["direct", peer.local, net.beta.address]
    assert row[5] is None  # no relay on a direct path
    text = table(HEADERS, rows)
    assert text.splitlines()[0].split() == HEADERS
    wide = render_rows(answers, names, wide=True)
    assert any(r[-1] == net.beta.identity for r in wide)


def test_only_the_nodes_own_key_reads_its_paths(net: Net) -> None:
    async def go() -> None:
        async with net.mesh(Identity.generate()) as stranger:
            with pytest.raises(Refused) as refused:
                await stranger.paths(PeerRef(net.alpha.address, net.alpha.identity))
            assert refused.value.status == 403
            with pytest.raises(Refused):
                await stranger.ping(net.beta.identity, 1, from_node=True)

    asyncio.run(go())


@pytest.fixture
def applied(hmctl: Hmctl, tmp_path: Path) -> Hmctl:
    (tmp_path / "network.yaml").write_text(NETWORK)
    result = hmctl("apply", "-f", str(tmp_path / "network.yaml"), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    return hmctl


def test_hmctl_ping_says_the_path_and_get_paths_lists_it(applied: Hmctl) -> None:
    got = applied("get", "node", "gamma", "-o", "json")
    status = json.loads(got.stdout)["items"][0]["status"]
    gamma, address = status["identity"], status["address"]
    result = applied("ping", "gamma", "--via", "alpha", "-c", "2")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"gamma ({gamma[:12]}…): direct {address}  rtt min/avg/max ")
    assert "(2 requests from alpha at " in line
    result = applied("ping", "gamma", "--via", "alpha", "-c", "1", "-o", "json")
    data = json.loads(result.stdout)
    assert (data["path"], data["relay"], data["upgraded"]) == ("direct", None, False)
    assert data["via"] is not None

    result = applied("get", "paths", "-o", "json")
    assert result.returncode == 0, result.stderr
    items = {item["name"]: item for item in json.loads(result.stdout)["items"]}
    assert set(items) == {"registry", "alpha", "gamma"}
    peers = {p["node"]: p for p in items["alpha"]["peers"]}
    assert peers[gamma]["path"] == "direct" and peers[gamma]["remote"] == address

    result = applied("get", "paths", "alpha")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# alpha: nat ") and len(lines) >= 3
    assert lines[1].split() == HEADERS
    row = next(line.split() for line in lines[2:] if line.split()[1] == "gamma")
    assert row[:5] == ["alpha", "gamma", "direct", row[3], address]
    assert "alpha/gamma" in applied("get", "paths", "alpha", "-o", "name").stdout.split()

    result = applied("get", "paths", "nosuch")
    assert result.returncode == 2 and "'nosuch' is not a running node" in result.stderr


RELAY = Identity.generate().node_id
PEER = Identity.generate().node_id
ME = Identity.generate().node_id


def _relayed_answer() -> PathsView:
    return PathsView.parse(
        {
            "node": ME,
            "nat": "endpoint-dependent",
            "local": ["192.168.1.20:4433"],
            "reflexive": ["203.0.113.7:61000"],
            "relay": {
                "node": RELAY,
                "transport": "tcp",
                "address": "198.18.0.1:4433",
                "observed": "203.0.113.7:52000",
                "rtt_ms": 12.25,
            },
            "peers": [
                {
                    "node": PEER,
                    "name": None,
                    "path": "relayed",
                    "local": "192.168.1.20:4433",
                    "remote": "198.18.0.1:4433",
                    "relay": RELAY,
                    "rtt_ms": 24.5,
                    "since": "2026-01-02T03:04:05Z",
                    "punch": {"attempts": 3, "successes": 0, "last": "failed"},
                }
            ],
        }
    )


def test_a_relayed_path_renders_with_its_relay_and_punches() -> None:
    view = _relayed_answer()
    names = {RELAY: "relay1"}
    [header] = render_headers([Answer("alpha", view)], names)
    assert header == (
        "# alpha: nat endpoint-dependent, reflexive 203.0.113.7:61000, "
        "home relay relay1 (tcp 198.18.0.1:4433, rtt 12.2 ms)"
    )
    [row] = render_rows([Answer("alpha", view)], names, wide=True)
    assert row[:7] == [
        "alpha",
        f"{PEER[:12]}…",
        "relayed",
        "192.168.1.20:4433",
        "198.18.0.1:4433",
        "relay1",
        "24.5 ms",
    ]
    assert row[8:] == ["0/3 failed", PEER]
    assert PathsView.parse(view.to_json()) == view  # what -o json prints parses back


def test_ping_lines_say_relayed_over_which_transport_and_upgraded() -> None:
    relayed = PingResult(
        PEER,
        "198.18.0.1:4433",
        "relayed",
        (12.0, 13.0),
        "beta",
        relay=RELAY,
        relay_transport="tcp",
        via=ME,
    )
    line = describe(relayed, {RELAY: "relay1", ME: "alpha"})
    assert line.startswith(f"beta ({PEER[:12]}…): relayed via relay1 (over tcp)  rtt min/avg")
    assert line.endswith("(2 requests from alpha)")
    upgraded = PingResult(
        PEER, "198.18.0.14:4433", "direct", (1.9,), "beta", local="198.18.0.10:4433", via=ME
    )
    upgraded = dataclasses.replace(upgraded, upgraded=True)
    line = describe(upgraded, {ME: "alpha"})
    assert "direct 198.18.0.14:4433 " in line
    assert line.endswith("(1 requests from alpha at 198.18.0.10:4433; upgraded to direct)")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"node": "alpha"}, "node: not a node ID"),
        ({"nat": "Symmetric NAT!"}, "nat: not a kind"),
        ({"local": ["1.2.3.4:5"] * 65}, "local: not a list of at most 64"),
        ({"peers": {"not": "a list"}}, "peers: not a list"),
        ({"relay": {"node": RELAY, "transport": "UDP!"}}, "relay.transport: not a kind"),
    ],
)
def test_a_bad_answer_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    data = _relayed_answer().to_json() | change
    with pytest.raises(BadPaths, match=field.replace("(", r"\(")):
        PathsView.parse(data)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rtt_ms": -1}, r"peers\[0\].rtt_ms: -1 ms is not a round trip"),
        ({"name": "be\x1bta"}, r"peers\[0\].name: holds characters that are not printable"),
        ({"since": "yesterday"}, r"peers\[0\].since: not an RFC 3339 time"),
        ({"punch": {"attempts": -2}}, r"peers\[0\].punch.attempts: not a count"),
        ({"remote": "x" * 300}, r"peers\[0\].remote: not a string of 1 to 256"),
    ],
)
def test_a_bad_peer_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    data = _relayed_answer().to_json()
    data["peers"] = [data["peers"][0] | change]
    with pytest.raises(BadPaths, match=field):
        PathsView.parse(data)
